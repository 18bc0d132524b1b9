"""Text targets: translators, SONAR embedding, quality gates, and the chunk jobs with their two backends."""

"""Text targets: what each language's targets are made of (plan), the translators (translators/,
one module each, one registry), SONAR embedding, quality gates, and the resumable chunk jobs
(chunks, jobs) with their two backends (backend: in this process or on Ray workers)."""

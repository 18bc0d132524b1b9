"""Vision features: video decoding, encoders, and the extraction core with its two backends."""

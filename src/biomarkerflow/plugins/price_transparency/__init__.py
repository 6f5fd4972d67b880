"""The price-transparency workflow type: health-plan machine-readable files (MRF) into tables."""

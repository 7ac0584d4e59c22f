"""bapo-exp."""

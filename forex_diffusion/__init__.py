"""forex_diffusion."""

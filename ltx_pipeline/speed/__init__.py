"""What makes generation fast and small: compile, CUDA graphs, fp8 products, fused kernels, attention processors,
memory modes. `acceleration.place_pipeline` installs them on a pipeline's components; the engine never imports them."""

"""fsrt.kernels"""

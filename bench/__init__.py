"""fsrt.bench"""

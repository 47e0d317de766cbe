"""fsrt.exporters"""

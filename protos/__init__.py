"""Vendor gRPC definitions and the code grpcio-tools generated from them (README.md)."""

"""fp8mac's hardware: Amaranth components that emit the MAC array's Verilog."""

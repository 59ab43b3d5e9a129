"""fp8mac's simulation: cocotb testbenches and runners for the generated Verilog."""

"""fp8mac's golden model: the bit-exact specification every hardware result is checked against.

Public API (a contract: other tools script against these names)::

    from fp8mac.model import FloatFormat, FORMATS, fp_add, fp_fma, fp_dot, Lfsr, MacConfig, mac_gemm
"""

from .arith import fp_add, fp_dot, fp_fma, fp_mul_exact
from .config import MacConfig
from .formats import FORMATS, FloatFormat
from .gemm import mac_gemm
from .lfsr import Lfsr

__all__ = ["FloatFormat", "FORMATS", "fp_add", "fp_dot", "fp_fma", "fp_mul_exact", "Lfsr", "MacConfig",
           "mac_gemm"]

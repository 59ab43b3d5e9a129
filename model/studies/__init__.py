"""The paper studies: the evidence behind fp8mac's format, chunk and rounding choices.

Each study is a module with a ``run_*`` function (returns its numbers) and a ``write_*`` function
(Markdown tables and a PNG plot), and a ``fp8mac study`` subcommand (:mod:`.cli`):

* :mod:`.accumulation`: dot-product error against length 2^4..2^16 for FP32, plain, chunked and
  stochastic FP16 accumulation (Wang et al., NeurIPS 2018, Fig. 3), with swamping marked.
* :mod:`.train`: a digits MLP trained with every GEMM on the array's golden model, against FP32
  and ablations (no chunking, nearest weight update, FP8 first/last layers) and HFP8 (E4M3
  forward, E5M2 errors; Sun et al., NeurIPS 2019), with each weight gradient's accumulation error;
  ``--long``: full-batch steps, K = 1438 weight gradients, chunked against plain.
* :mod:`.bitwidth`: the variance retention ratio of Sakr et al. (ICLR 2019), modelled and
  measured, and the accumulator mantissa width it asks for.

Every number comes from :func:`fp8mac.model.gemm.mac_gemm` (bit-exact) with printed, overridable
seeds; the committed outputs of the default runs are in ``reports/``.
"""

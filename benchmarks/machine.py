"""What the benchmarks ran on: speeds differ several-fold between CPUs with and without
AVX-512 / VNNI int8 instructions (measured: the served sentiment scorer 1,120 posts/s on one
machine drawn for this project, 156 on an AVX2-only AMD EPYC), so every figure carries it."""

from __future__ import annotations

import os

from models.hf import cpu_flags, cpuinfo_field, int8_is_exact

# the instruction sets that decide bf16/int8/fp32 transformer speed on x86
_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16", "amx_bf16")


def describe() -> str:
    """``"<model name>, <n> CPUs, avx2 avx512f ..., int8 exact|inexact"``."""
    name = cpuinfo_field(("model name",)) or "unknown CPU"
    flags = cpu_flags()
    found = " ".join(f for f in _FLAGS if f in flags) or "no avx2"
    exact = "int8 exact" if int8_is_exact(flags) else "int8 inexact (no VNNI)"
    return f"{name}, {os.cpu_count()} CPUs, {found}, {exact}"

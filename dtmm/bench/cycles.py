"""The estimated-cycles MODEL beside QEMU's instruction counts: what it is and its sources.

QEMU counts executed instructions, not cycles. The counting plugin
(``dtmm/codegen/platform/support/insn_count_plugin.c``) also decodes every executed
Thumb-2 instruction into a class (:data:`CLASSES`) and schedules each translation block
once, statically, on a simple model of the target core; the block's modelled cycles
are added each time it runs. That is a **model**: no caches or memory wait states,
branches cost the same taken or not, blocks scheduled on their own, register
dependencies ignored on the M7. It ranks kernels by how their instruction mix maps on
the core (e.g. a Helium instruction occupies its pipe for two beats; a gather loads one
element per cycle); it is not a latency measurement.

Figures used (:data:`MODELS`) and where they come from. Arm's Cortex-M55 and Cortex-M7
software optimization guides themselves were not reachable from this environment; the
figures below are taken from LLVM's scheduling models of those cores, which Arm's
engineers contributed and which state the same pipeline facts
(``llvm/lib/Target/ARM/ARMScheduleM55.td``: "Each MVE instruction needs to take 2
beats ... So long as the beats are to different pipelines, the execution of the
first-beat-of-the-second-instruction can overlap with the second-beat-of-the-first";
four EPU pipelines control / load-store / integer / float-multiply; in-order, scalar
ALU instructions one cycle, mispredict penalty 3. ``ARMScheduleM7.td``: dual issue of
most instructions, two ALUs, two load pipes, one store, one MAC and one branch pipe,
LDM/STM/LDRD/STRD single-issue, divides 7 cycles, mispredict 4-6). The Cortex-M4
figures (single issue, loads 2 cycles, LDM 1 + N, branches 2, divide 2-12 depending on
the operands) are from Arm's Cortex-M4 Technical Reference Manual instruction timing
table, as recalled here (not re-checked against the document in this environment). The
model has no operand values, so every divide costs a fixed 7 cycles on all three cores
(the M7's figure, inside the M4's 2-12 range).

Example:
    >>> MODELS["cortex-m55"]["mve_load_store"]
    '2 beats on the load/store pipe (gather / scatter: 1 cycle per element)'
    >>> sorted(MODELS) == sorted(["cortex-m4", "cortex-m7", "cortex-m55"])
    True
"""
from __future__ import annotations

__all__ = ["CLASSES", "MODELS", "SOURCES", "model_text"]

#: Instruction classes of the counting plugin (dtmm.codegen.platform.runner.INSTRUCTION_CLASSES).
CLASSES = ("scalar_alu", "load_store", "branch", "mve_load_store", "mve_mac", "mve_other")

#: Per target and class: the modelled cost (what the plugin's ``schedule()`` does).
MODELS = {
    "cortex-m55": {
        "scalar_alu": "1 cycle (divide 7; the dual issue of 16-bit pairs not modelled)",
        "load_store": "1 cycle per register moved (LDR/STR 1, LDM/STM/PUSH/POP N)",
        "branch": "2 cycles (low-overhead-loop WLS/DLS/LE/LETP: 1)",
        "mve_load_store": "2 beats on the load/store pipe (gather / scatter: 1 cycle per element)",
        "mve_mac": "2 beats on the multiply pipe",
        "mve_other": "2 beats on the integer pipe",
        "overlap": "in order; an MVE instruction issues in 1 cycle and holds its pipe for its "
                   "beats, so the next instruction of another pipe overlaps its second beat",
    },
    "cortex-m7": {
        "scalar_alu": "1 cycle, dual-issued with the next instruction unless both multiply "
                      "(one MAC pipe) (divide 7, single issue)",
        "load_store": "1 cycle, dual issue as above (two stores do not pair); LDM/STM/PUSH/POP/"
                      "LDRD/STRD single issue, 1 cycle per 2 registers",
        "branch": "2 cycles, not paired",
        "mve_load_store": "-", "mve_mac": "-", "mve_other": "-",
        "overlap": "register dependencies not tracked (an optimistic bound)",
    },
    "cortex-m4": {
        "scalar_alu": "1 cycle (divide: a fixed 7, the TRM's range is 2-12)",
        "load_store": "2 cycles (LDM/STM/PUSH/POP 1 + N)",
        "branch": "2 cycles",
        "mve_load_store": "-", "mve_mac": "-", "mve_other": "-",
        "overlap": "single issue",
    },
}

#: Where the figures come from (cited in the benchmark text).
SOURCES = (
    "LLVM ARMScheduleM55.td (Cortex-M55 scheduling model: 2-beat MVE instructions on four "
    "EPU pipes, overlap of beats across pipes, in-order, mispredict penalty 3)",
    "LLVM ARMScheduleM7.td (Cortex-M7: dual issue, 2 ALU / 2 load / 1 store / 1 MAC / "
    "1 branch pipes, LDM/STM/LDRD/STRD single issue, divide latency 7)",
    "Arm Cortex-M4 Technical Reference Manual, instruction cycle timings (as recalled, not "
    "re-checked here)",
)


def model_text(target: str) -> str:
    """One line describing the model of ``target`` (for the benchmark text).

    >>> "2 beats" in model_text("cortex-m55")
    True
    """
    m = MODELS[target]
    parts = [f"{c.replace('_', ' ')}: {m[c]}" for c in CLASSES if m.get(c, "-") != "-"]
    return f"{target}: " + "; ".join(parts) + f"; {m['overlap']}."

"""SL-CAI: the critique-revision loop that turns red-team drafts into SFT data.

Owns: drafting with the policy, critique and revision by the critic under sampled principles,
degeneracy checks, and the resumable stage writing the trace and SFT files.
Must not know: other workflows (feedback, training, evaluation) or the CLI.
"""

from cai.critique._degenerate import REASONS as DEGENERACY_REASONS
from cai.critique._degenerate import degeneracy, trim_to_sentence
from cai.critique._stage import (
    CritiqueConfig,
    CritiqueSummary,
    critique_revise,
    run_critique_stage,
    sft_example,
)
from cai.critique._templates import SL_CAI_TEMPLATES, demonstration_chat, sl_cai_template

__all__ = [
    "DEGENERACY_REASONS",
    "SL_CAI_TEMPLATES",
    "CritiqueConfig",
    "CritiqueSummary",
    "critique_revise",
    "degeneracy",
    "demonstration_chat",
    "run_critique_stage",
    "sft_example",
    "sl_cai_template",
    "trim_to_sentence",
]

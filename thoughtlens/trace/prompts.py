"""Building the model input for a problem: the one place that decides what a rollout's prompt looks like.

The paper (`generate_rollouts.py`) asks for step-by-step work and a boxed answer; models with a chat template
get the instruction as the user turn of that template (the generation prompt included), others get it as
plain text followed by a blank line.
"""

from __future__ import annotations

DEFAULT_INSTRUCTION = "{problem}\n\nSolve the problem step by step. Put the final answer in \\boxed{{}}."


def build_prompt(tokenizer, problem: str, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The exact model input for `problem`. tokenizer: an HF tokenizer (or None for a template-free prompt)."""
    message = instruction.format(problem=problem)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
        )
    return message + "\n\n"

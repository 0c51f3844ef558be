"""Export and check: faults found in review (session 47)."""

from __future__ import annotations

import pytest

from pvt_deploy.errors import InputError


def test_a_task_given_to_the_python_api_is_taken_in_any_case_as_the_cli_takes_it() -> None:
    """export --task Detect and models --task Segment fold the word (ea93147), but the zoo's own check of the
    task, which create_model and Model reach, compared it as typed: create_model("pvt_v2_b0", task="Classify")
    was refused, a second rule for one word. One rule (errors.one_of) now, and its refusal as before."""
    from pvt_deploy.models import create_model, resolve_name

    model = create_model("pvt_v2_b0", task="Classify", seed=0)
    assert model.zoo_task == "classify" and model.zoo_name == "pvt_v2_b0-cls"
    assert resolve_name("pvt_v2_b2_li", "SEGMENT").name == "pvt_v2_b2_li-seg"
    with pytest.raises(InputError) as refused:
        resolve_name("pvt_small", "segmentation")
    assert str(refused.value) == "task 'segmentation': choose one of detect, segment, classify, features"

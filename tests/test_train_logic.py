"""The logic the Train page shows that lives in core: a run's planned stages, joined networks' speeds."""

from core.model.advice import with_joined_speeds
from core.model.backbones import REGISTRY, get_backbone
from core.model.joined import OFFERED
from core.model.train import STAGE_EMBED, STAGE_FINETUNE, STAGE_HEAD, STAGE_REFIT, TrainConfig, planned_stages


def test_fine_tuning_is_planned_only_when_blocks_are_retrained_and_then_learning_every_photo_unless_turned_off():
    assert planned_stages({}) == [STAGE_EMBED, STAGE_HEAD]
    assert planned_stages({"unfreeze_blocks": 0}) == [STAGE_EMBED, STAGE_HEAD]
    assert planned_stages({"unfreeze_blocks": 2}) == [STAGE_EMBED, STAGE_HEAD, STAGE_FINETUNE, STAGE_REFIT]
    assert planned_stages({"unfreeze_blocks": 2, "refit": False}) == [STAGE_EMBED, STAGE_HEAD, STAGE_FINETUNE]


def test_a_run_recorded_with_the_older_refit_flag_keeps_its_choice():
    assert TrainConfig.from_dict({"refit_head": False}).refit is False
    assert TrainConfig.from_dict({"refit_head": True}).refit is True
    assert planned_stages({"unfreeze_blocks": 1, "refit_head": False})[-1] == STAGE_FINETUNE


def test_a_joined_network_takes_its_members_time_together_once_all_are_timed():
    speeds = {name: {"ms_per_photo": 10.0 + i} for i, name in enumerate(REGISTRY)}
    joined = with_joined_speeds(speeds)
    for name in OFFERED:
        members = get_backbone(name).members
        assert joined[name] == {"ms_per_photo": sum(speeds[m.name]["ms_per_photo"] for m in members)}
    assert {k: v for k, v in joined.items() if k not in OFFERED} == speeds
    assert set(speeds) == set(REGISTRY)  # the argument is left as it was


def test_a_joined_network_with_an_untimed_member_has_no_speed():
    member = get_backbone(OFFERED[0]).members[0].name
    assert OFFERED[0] not in with_joined_speeds({member: {"ms_per_photo": 5.0}})

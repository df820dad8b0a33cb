"""Poisoning: deterministic concepts and targets, one combined objective, the same budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from enginekit import TINY_CLIP, artwork, as_array, half_flat
from sfumato.cloak_report import BudgetReport, CloakReport, PoisonReport
from sfumato.engine import poison
from sfumato.engine.cloak import cloak_image, working_copy
from sfumato.engine.encoders import load_encoder
from sfumato.engine.optimiser import search_perturbation
from sfumato.errors import EncoderError, UsageError
from sfumato.options import CloakRequest
from sfumato.specs import PoisonRequest, StyleKind, StyleRequest, parse_poison

EFFNET = "effnet-lite:0"


def work(size: int = 64) -> torch.Tensor:
    return working_copy(as_array(artwork(size)), size, torch.device("cpu"))


def options(**kw) -> CloakRequest:
    base = dict(
        style="none", poison=parse_poison("auto:purse"), encoders=(EFFNET,), steps=4, device="cpu", threads=2
    )
    return CloakRequest(**{**base, **kw})


@pytest.mark.parametrize(
    ("text", "concept", "target"),
    [
        ("cow:handbag", "cow", "handbag"),
        ("auto", "auto", "auto"),
        ("ox", "ox", "auto"),
        ("AUTO:purse", "auto", "purse"),
    ],
)
def test_poison_spec_reads_concept_and_target(text, concept, target):
    assert parse_poison(text) == PoisonRequest(concept, target)


def test_poisoning_a_concept_into_itself_is_refused():
    with pytest.raises(UsageError, match="same concept"):
        parse_poison("cow:Cow")


@pytest.mark.parametrize("spec", [EFFNET, TINY_CLIP])
def test_auto_target_is_far_and_the_same_every_time(spec):
    encoder = load_encoder(spec)
    names = poison.vocabulary([encoder])
    concept = "ox" if spec == EFFNET else "cow"
    first = poison.auto_target([encoder], concept)
    poison._EMBEDDINGS.clear()  # as after a restart: nothing cached
    assert poison.auto_target([encoder], concept) == first
    assert first in names and first.lower() != concept
    matrix = poison.concept_matrix(encoder, names)
    similarity = matrix @ matrix[names.index(concept)]
    # among the least similar few percent of the vocabulary, not merely "different"
    assert (similarity < similarity[names.index(first)]).float().mean() < 0.1


def test_auto_targets_spread_over_concepts_instead_of_one_sink():
    encoder = load_encoder(EFFNET)
    targets = {
        poison.auto_target([encoder], c) for c in ("ox", "tabby cat", "sailboat", "lighthouse", "daisy")
    }
    assert len(targets) >= 3


def test_detected_concept_is_reported_with_its_confidence_and_is_stable():
    encoder = load_encoder(EFFNET)
    image = work(96)
    concept, confidence = poison.detect_concept([encoder], image)
    assert concept in encoder.concept_vocabulary() and 0 < confidence <= 1
    assert poison.detect_concept([encoder], image) == (concept, confidence)


def test_ledger_target_wins_over_a_fresh_auto_choice():
    encoder = load_encoder(EFFNET)
    image = work()
    concept, _ = poison.detect_concept([encoder], image)
    plan = poison.plan_poison(
        [encoder], image, parse_poison("auto:auto"), known_targets={concept: "umbrella"}
    )
    assert (plan.concept, plan.target, plan.concept_auto, plan.target_auto) == (
        concept,
        "umbrella",
        True,
        True,
    )
    fresh = poison.plan_poison([encoder], image, parse_poison("auto:auto"))
    assert fresh.target == poison.auto_target([encoder], concept)


def test_target_outside_the_classifier_vocabulary_is_one_clear_sentence():
    with pytest.raises(EncoderError, match="'handbag' is not an ImageNet class"):
        poison.plan_poison([load_encoder(EFFNET)], work(), parse_poison("ox:handbag"))


class Constant:
    """A term that scores every view the same, to read the optimiser's weighting."""

    def __init__(self, value: float) -> None:
        self.value, self.encoder = value, None

    def shift(self, cloaked, views):
        return torch.full((len(views),), self.value)


@pytest.mark.parametrize(("n_style", "n_poison"), [(1, 1), (2, 1), (1, 3), (3, 2)])
def test_style_and_poison_get_their_documented_shares_whatever_the_term_counts(n_style, n_poison):
    style = [Constant(1.0) for _ in range(n_style)]
    bad = [Constant(0.0) for _ in range(n_poison)]
    combined = poison.combine_terms(style, bad)
    # the optimiser averages its terms' mean scores
    objective = torch.stack([t.shift(None, [0, 0]).mean() for t in combined]).mean()
    assert float(objective) == pytest.approx(1 - poison.POISON_SHARE)


def purse_rank(encoder, image: torch.Tensor) -> int:
    return poison.targeted_success([encoder], image, "purse")["target_rank"][encoder.spec]


def test_poison_term_gradient_moves_the_classifier_toward_the_target():
    from sfumato.engine.budget import budget_map
    from sfumato.engine.levels import budget_for, search_for

    encoder = load_encoder(EFFNET)
    image = work(96)
    (term,) = poison.poison_terms([encoder], "ox", "purse")
    eps = budget_map(image, budget_for("high"))
    delta = search_perturbation(image, eps, [term], search_for("fast", 12), seed=0)
    before, after = purse_rank(encoder, image), purse_rank(encoder, (image + delta).clamp(0, 1))
    assert after <= 5 < before


def test_each_step_scores_against_a_new_variation_of_the_classifier_and_reruns_repeat():
    from sfumato.engine.views import ViewSampler

    encoder = load_encoder(EFFNET)
    image = work(96)
    views = [ViewSampler(96, 96, seed=3).sample(mild=True)]

    def scores() -> list[float]:
        (term,) = poison.poison_terms([encoder], "ox", "purse")
        with torch.no_grad():
            return [float(term.shift(image, views)[0]) for _ in range(3)]

    first = scores()
    assert len(set(first)) == 3  # three steps, three variations of the model
    assert scores() == first  # a poison is reproducible


def test_combined_cloak_moves_style_and_poison_in_one_search():
    image = artwork(96)
    result = cloak_image(image, options(style="pixelart", intensity="high", steps=10))
    report = result.report
    assert report.target == "pixelart" and report.encoders[0].shift > 0
    assert report.poison.target == "purse" and report.poison.concept_auto
    clean = poison.targeted_success([load_encoder(EFFNET)], work(96), "purse")
    after = report.poison.target_rank[EFFNET]
    assert after < clean["target_rank"][EFFNET]


def test_poison_alone_at_low_stays_inside_the_flat_colour_budget():
    image = half_flat(96)
    result = cloak_image(image, options(intensity="low", steps=6))
    change = np.abs(result.pixels - as_array(image)) * 255
    flat = change[8:-8, 8 : 96 // 2 - 8]  # away from the edge, where texture lends budget
    assert flat.max() <= 1.0  # a fifth of low's 4/255, rounded to the 8-bit grid
    assert result.report.psnr >= 40
    assert result.report.target == "none" and result.report.poison.target == "purse"


def test_style_none_without_poison_is_refused():
    with pytest.raises(UsageError, match="style none without poisoning"):
        cloak_image(artwork(32), options(poison=None))


def test_cli_poison_option_reaches_the_engine_options():
    import argparse

    from sfumato.commands import cloak as cloak_command

    parser = argparse.ArgumentParser()
    cloak_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["cloak", "a.png", "--poison", "Auto:purse", "--style", "none"])
    chosen = cloak_command.options_from(args)
    assert (chosen.poison, chosen.style) == (PoisonRequest("auto", "purse"), "none")
    assert cloak_command.options_from(parser.parse_args(["cloak", "a.png"])).poison is None
    with pytest.raises(UsageError, match="--poison-anchors needs --poison"):
        cloak_command.options_from(parser.parse_args(["cloak", "a.png", "--poison-anchors", "."]))


class PoisoningCloaker:
    """The daemon's stand-in engine: picks a *different* auto target on every call unless the
    ledger's choice is passed in, as a changed ensemble might."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, device, threads):
        return self

    def prepare(self, options) -> None:
        pass

    def cloak_file(
        self, src, dst, options, *, overwrite=False, progress=None, should_stop=None, on_output=None
    ):
        from sfumato.fileops import atomic_write_bytes
        from sfumato.pipeline import CloakOutcome

        self.calls += 1
        known = options.poison_targets
        target = known.get("ox", f"fresh-{self.calls}")
        if on_output is not None:  # as the pipeline does: the final name first
            on_output(Path(dst))
        atomic_write_bytes(Path(dst), Path(src).read_bytes())
        poisoned = PoisonReport("ox", 0.42, False, target, True, 1.0, {})
        report = CloakReport(
            StyleRequest(StyleKind.NONE, "none"), "low", "fast", BudgetReport(4, 40, 9.8, 75, 1), 40.0,
            0.99, 0.0, (), poisoned, 1, 1, (64, 64), "cpu", 0, 0.01,
        )  # fmt: skip
        return CloakOutcome(Path(src), Path(dst), "ok", "none", 40.0, 0.99, 0.01, report)


def test_daemon_keeps_one_auto_target_per_concept_across_restarts_and_logs_it(tmp_path, caplog):
    import logging

    from daemonkit import art, folder_block, png_bytes, write_config
    from sfumato.config import load_config
    from sfumato.daemon import Daemon

    poisoned = '[folders.poison]\nenabled = true\nconcept = "auto"\ntarget = "auto"\n'
    config = write_config(tmp_path, folders=folder_block(tmp_path, extra='style = "none"\n' + poisoned))
    outbox = art(tmp_path)["outbox"]
    outbox.mkdir(parents=True)
    cloaker = PoisoningCloaker()
    for n in range(2):  # two runs: a restart in between
        (outbox / f"cow{n}.png").write_bytes(png_bytes(n))
        with caplog.at_level(logging.INFO, logger="sfumato"):
            assert (
                Daemon(load_config(config), config_path=config, cloaker_factory=cloaker).run(once=True) == 0
            )
    done = [r.getMessage() for r in caplog.records if r.getMessage().startswith("done ")]
    assert len(done) == 2
    assert all("poison ox (42%) -> fresh-1, surrogate top-5 100%" in line for line in done)


def test_ledger_poison_targets_survive_reopening(tmp_path):
    from sfumato.ledger import Ledger

    ledger = Ledger(tmp_path)
    assert ledger.set_poison_target("Ox", "purse") == "purse"
    assert ledger.set_poison_target("ox", "umbrella") == "purse"
    ledger.close()
    assert Ledger(tmp_path).poison_targets() == {"ox": "purse"}


def test_config_style_none_needs_poison_enabled(tmp_path):
    from daemonkit import folder_block, write_config
    from sfumato.config import load_config
    from sfumato.errors import ConfigError

    path = write_config(tmp_path, folders=folder_block(tmp_path, extra='style = "none"\n'))
    with pytest.raises(ConfigError, match='style "none" without \\[folders.poison\\] enabled'):
        load_config(path)

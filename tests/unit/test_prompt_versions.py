"""Prompts are versioned: a changed template is a new version, recorded in agent_tools/prompt_versions.json."""

from __future__ import annotations

from agent_tools.prompts import PROMPTS, catalog, released_versions


def test_every_template_matches_the_hash_released_for_its_version():
    released = released_versions()
    for p in PROMPTS:
        versions = released.get(p.name, {})
        assert str(p.version) in versions, (
            f"{p.name} v{p.version} is not released: add its hash {p.sha256} to agent_tools/prompt_versions.json")
        assert versions[str(p.version)] == p.sha256, (
            f"{p.name}: the template changed but its version did not: bump PromptSpec.version and record "
            f"{p.sha256} under the new version")


def test_a_version_is_never_reused_for_another_template():
    for name, versions in released_versions().items():
        assert len(set(versions.values())) == len(versions), f"{name}: two versions share one template"


def test_the_catalog_the_tracer_logs_names_version_and_hash():
    info = catalog()["summarise_transfers"]
    spec = next(p for p in PROMPTS if p.name == "summarise_transfers")
    assert (info.version, info.sha256, info.template) == (str(spec.version), spec.sha256, spec.template)
    assert f"v{spec.version}]" in spec.render(days="7")

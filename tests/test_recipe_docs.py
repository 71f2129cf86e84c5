"""The recipe reference cannot drift from the schema, and `trigger recipe show` resolves."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from trigger.cli import cli
from trigger.config import Recipe, load_recipe, recipe_reference

ROOT = Path(__file__).resolve().parents[1]


def _fields(model: type, prefix: str = "") -> list[tuple[str, object]]:
    found = []
    for name, field in model.model_fields.items():
        found.append((f"{prefix}{name}", field))
        if isinstance(field.annotation, type) and hasattr(field.annotation, "model_fields"):
            found += _fields(field.annotation, f"{prefix}{name}.")
    return found


def test_docs_recipes_md_is_the_generated_reference() -> None:
    assert (ROOT / "docs" / "recipes.md").read_text() == recipe_reference(), (
        "docs/recipes.md is stale: run `trigger recipe reference > docs/recipes.md`"
    )


def test_the_reference_names_every_key_with_a_meaning() -> None:
    reference = recipe_reference()
    for key, field in _fields(Recipe):
        assert field.description, f"{key} has no description in trigger/config.py"
        rows = [line for line in reference.splitlines() if line.startswith(f"| `{key}` |")]
        assert len(rows) == 1, key
    # Defaults come from the resolved default recipe: the teacher is a transformer.
    assert "| `distillation.teacher.architecture.kind` | " in reference
    assert '`"transformer"`' in reference.split("distillation.teacher.architecture.kind")[1]


def test_recipe_show_prints_the_resolved_recipe() -> None:
    args = ["recipe", "show", str(ROOT / "models/default.yaml"), "--set", "training.epochs=5"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    expected = load_recipe(ROOT / "models/default.yaml", ["training.epochs=5"])
    assert shown == expected.model_dump(mode="json")
    assert shown["training"]["epochs"] == 5 and shown["firmware"]["part"]  # defaults filled in
    bad = CliRunner().invoke(cli, ["recipe", "show", str(ROOT / "models/default.yaml"),
                                   "--set", "training.epochz=5"])  # fmt: skip
    assert bad.exit_code == 2 and "unknown key 'training.epochz'" in bad.stderr

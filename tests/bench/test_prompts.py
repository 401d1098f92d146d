from __future__ import annotations

import json
import re

import pytest

from arlon.data.toyworld import prompt_set
from bench.errors import BenchError
from bench.prompts import (
    PROMPT_SET_FIELDS,
    PROMPT_SETS,
    PromptSetConfig,
    caption_problem,
    check_prompt_field,
    load_prompts,
    text_prompt_id,
)

SAFE_ID = re.compile(r"^[a-z0-9_][a-z0-9_-]*$")


def test_every_prompt_set_is_registered():
    assert PROMPT_SETS.keys() == ["toyworld", "toyworld_long", "vbench", "csv", "text"]


def test_toyworld_prompts_carry_their_scene_and_stable_ids():
    prompts = load_prompts(PromptSetConfig(kind="toyworld", split="heldout", n=5, seed=0))
    toys = prompt_set("heldout", 5, seed=0)
    assert [p.id for p in prompts] == [t.id for t in toys] == [f"toy_heldout_0_{i:05d}" for i in range(5)]
    assert [p.text for p in prompts] == [t.caption for t in toys]
    assert all(p.scene == t.scene for p, t in zip(prompts, toys))
    assert [p.id for p in load_prompts(PromptSetConfig(n=5), limit=2)] == [p.id for p in prompts[:2]]


def test_text_prompt_ids_are_stable_safe_and_distinct():
    first = text_prompt_id("A red circle moves from left to right on a dark background, slowly")
    assert first == text_prompt_id("A red circle moves from left to right on a dark background, slowly")
    assert re.fullmatch(r"a-red-circle-moves-from-left-to-right-[0-9a-f]{8}", first)
    assert text_prompt_id("A red circle moves from left to right on a dark background, fast") != first
    assert SAFE_ID.match(text_prompt_id("東京の夜景 / 🌃")) and text_prompt_id("東京の夜景").startswith("prompt-")
    assert len(text_prompt_id("word " * 100)) <= 48 + 1 + 8


def test_text_file_one_prompt_per_line_without_blanks_or_repeats(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a cat plays piano\n\n  a dog surfs  \na cat plays piano\n")
    prompts = load_prompts(PromptSetConfig(kind="text", path=str(path)))
    assert [p.text for p in prompts] == ["a cat plays piano", "a dog surfs"]
    assert prompts[0].id == text_prompt_id("a cat plays piano") and prompts[0].scene is None


def test_csv_reads_text_or_caption_or_the_named_column(tmp_path):
    opensora = tmp_path / "opensora.csv"
    opensora.write_text('path,text,num_frames\na.mp4,"a bear, walking",51\nb.mp4,a fox,51\n')
    assert [p.text for p in load_prompts(PromptSetConfig(kind="csv", path=str(opensora)))] == ["a bear, walking", "a fox"]
    openvid = tmp_path / "openvid.csv"
    openvid.write_text("video,caption,aesthetic\nv1.mp4,sunset over sea,5.1\n")
    assert [p.text for p in load_prompts(PromptSetConfig(kind="csv", path=str(openvid)))] == ["sunset over sea"]
    assert [p.text for p in load_prompts(PromptSetConfig(kind="csv", path=str(openvid), column="video"))] == ["v1.mp4"]
    with pytest.raises(BenchError, match=r"no column 'prompt' \(columns: video, caption, aesthetic\); set prompts.column"):
        load_prompts(PromptSetConfig(kind="csv", path=str(openvid), column="prompt"))


def test_vbench_full_info_json_with_dimension_filter(tmp_path):
    path = tmp_path / "VBench_full_info.json"
    path.write_text(json.dumps([
        {"prompt_en": "a person riding a bike", "dimension": ["subject_consistency", "dynamic_degree"]},
        {"prompt_en": "a red apple", "dimension": ["color"], "auxiliary_info": {"color": {"color": "red"}}},
        {"prompt_en": "a cup", "dimension": ["object_class"]},
    ]))
    everything = load_prompts(PromptSetConfig(kind="vbench", path=str(path)))
    assert [p.text for p in everything] == ["a person riding a bike", "a red apple", "a cup"]
    assert everything[0].dimensions == ("subject_consistency", "dynamic_degree")
    assert everything[1].auxiliary == {"color": {"color": "red"}}
    colour = load_prompts(PromptSetConfig(kind="vbench", path=str(path), dimensions=("color", "dynamic_degree")))
    assert [p.text for p in colour] == ["a person riding a bike", "a red apple"]
    with pytest.raises(BenchError, match=r"prompts.dimensions: \['colour'\] not in"):
        load_prompts(PromptSetConfig(kind="vbench", path=str(path), dimensions=("colour",)))


def test_vbench_per_dimension_folder_merges_repeated_prompts(tmp_path):
    (tmp_path / "color.txt").write_text("a red car\na blue bird\n")
    (tmp_path / "subject_consistency.txt").write_text("a red car\n")
    prompts = load_prompts(PromptSetConfig(kind="vbench", path=str(tmp_path)))
    assert [(p.text, p.dimensions) for p in prompts] == [
        ("a red car", ("color", "subject_consistency")),
        ("a blue bird", ("color",)),
    ]


def test_prompt_set_errors_say_what_to_fix(tmp_path):
    with pytest.raises(BenchError, match="kind 'text' reads a file; set prompts.path"):
        load_prompts(PromptSetConfig(kind="text"))
    with pytest.raises(BenchError, match="no such file or folder"):
        load_prompts(PromptSetConfig(kind="csv", path=str(tmp_path / "missing.csv")))
    with pytest.raises(BenchError, match=r"prompts.kind: unknown prompt set 'vbnech'; did you mean 'vbench'\?"):
        load_prompts(PromptSetConfig(kind="vbnech"))
    with pytest.raises(BenchError, match="prompts.split: unknown toy-world split 'heldot'"):
        load_prompts(PromptSetConfig(split="heldot"))
    (tmp_path / "list.json").write_text('{"prompt_en": "x"}')
    with pytest.raises(BenchError, match="expected VBench_full_info.json"):
        load_prompts(PromptSetConfig(kind="vbench", path=str(tmp_path / "list.json")))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(BenchError, match="is empty"):
        load_prompts(PromptSetConfig(kind="text", path=str(tmp_path / "empty.txt")))
    with pytest.raises(BenchError, match="--limit must be at least 1"):
        load_prompts(PromptSetConfig(), limit=0)


def test_each_kind_refuses_the_fields_it_does_not_read(tmp_path):
    path = tmp_path / "my_prompts.txt"
    path.write_text("a cat\n")
    assert PROMPT_SET_FIELDS == {
        "toyworld": ("split", "n", "seed"), "toyworld_long": ("split", "n", "seed", "frames", "parts"),
        "vbench": ("path", "dimensions"), "csv": ("path", "column"), "text": ("path",),
    }
    with pytest.raises(BenchError, match=r"prompts.path: kind 'toyworld' does not read it \(it reads split, n and seed\); "
                                         r"did you mean kind 'vbench', 'csv' or 'text'\?"):
        load_prompts(PromptSetConfig(kind="toyworld", path=str(path)))
    with pytest.raises(BenchError, match=r"prompts.n: kind 'text' does not read it \(it reads path\); did you mean kind 'toyworld' or 'toyworld_long'\?"):
        load_prompts(PromptSetConfig(kind="text", path=str(path), n=4))
    with pytest.raises(BenchError, match=r"prompts.column: kind 'vbench' does not read it .*did you mean kind 'csv'\?"):
        load_prompts(PromptSetConfig(kind="vbench", path=str(path), column="caption"))
    with pytest.raises(BenchError, match=r"prompts.pth: unknown field; did you mean 'path'\?"):
        check_prompt_field("text", "pth")
    with pytest.raises(BenchError, match=r"prompts.n = 0 is out of range: it must be at least 1"):
        load_prompts(PromptSetConfig(n=0))
    with pytest.raises(BenchError, match=r"prompts.seed = -1 is out of range: it must be at least 0"):
        load_prompts(PromptSetConfig(seed=-1))


def test_text_prompts_in_the_toy_caption_grammar_carry_their_scene(tmp_path):
    from arlon.data.toyworld import caption_scene

    path = tmp_path / "prompts.txt"
    path.write_text(
        "A red circle moves from left to right on a dark background.\n\n"
        "a bear walks through a snowy forest\n"
        "a light background with a blue square bouncing back and forth and a green cross rising, as the camera pans left\n"
    )
    red, bear, two = load_prompts(PromptSetConfig(kind="text", path=str(path)))
    assert (red.line, bear.line, two.line) == (1, 3, 4)
    assert red.scene == caption_scene(red.text) and [o.motion for o in red.scene.objects] == ["right"]
    assert [(o.colour, o.motion) for o in two.scene.objects] == [("blue", "bounce"), ("green", "up")]
    assert two.scene.camera_pan == "left" and two.scene.background == "light"
    assert bear.scene is None
    assert caption_problem(bear.text).startswith("'a bear walks through a snowy forest' is not a toy-world caption")
    assert caption_problem(red.text) is None

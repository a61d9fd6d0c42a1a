"""The tracked text speaks of the product, never of how it was built: no issue numbers, work
stops or sessions, no tools of the development environment. A measurement names its date, machine,
torch version and command instead; a document points to another by path and section."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".sh", ".html", ".css", ".js"}
PATTERNS = {
    "an issue number": r"\bissues? #?\d+|(?<![\w&/#])#\d+\b",
    "a work stop": r"\bstops? \d+\b|\bthis stop\b",
    "a work session": r"\bsessions?\b",  # onnxruntime's InferenceSession does not match (no word boundary)
    "an issue's item": r"\bitem \d+\b",
    "the development brief or its tools": r"\bthe brief\b|\bfarm-studio\b|\bdevice tool\b|\bnot drawn\b",
}
# The pages a user reads (every tracked Markdown file) report results, not a study's progress: no
# goals met or missed, no pauses, no development machine (a machine is named by its CPU instead).
# The scripts of benchmarks/ may state the goal they measure against.
PAGE_PATTERNS = {
    "a goal": r"\bgoals?\b",
    "a pause": r"\bpaused\b",
    "the development machine": r"\bdevelopment machines?\b|\bfirst (?:2-core )?machine\b",
    "a study's progress": r"\bthe study'?s?\b|\bfor want of (?:cpu )?time\b|\bthe next thing to try\b",
}
# (file, matched text) pairs a file needs, each with its reason; none at present (onnxruntime's
# InferenceSession is no match, and its variables are named ort_session)
ALLOWED: set[tuple[str, str]] = set()


def tracked_text_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but the environment's
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and not {".venv", ".git", "runs", "site"} & set(p.parts)]
    return [ROOT / n for n in names if Path(n).suffix in TEXT or Path(n).name in {".ci/run", "run"} or n.startswith(".ci/")]


def test_no_process_words_in_the_tracked_text():
    found = []
    for path in tracked_text_files():
        if path == Path(__file__) or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for what, pattern in {**PATTERNS, **(PAGE_PATTERNS if path.suffix == ".md" else {})}.items():
                for match in re.finditer(pattern, line, flags=re.IGNORECASE):
                    if (path.relative_to(ROOT).as_posix(), match.group(0).lower()) not in ALLOWED:
                        found.append(f"{path.relative_to(ROOT)}:{number}: {what}: {match.group(0)!r} in {line.strip()[:100]!r}")
    assert not found, "process words in the tracked text:\n" + "\n".join(found)


def test_the_scan_finds_what_it_looks_for():
    lines = ["fixed in issue #12", "measured this stop", "see (#8)", "the session's machine", "item 3 of the list", "the brief says"]
    assert all(any(re.search(p, line, flags=re.IGNORECASE) for p in PATTERNS.values()) for line in lines)
    clean = ["ort.InferenceSession(path)", "colour #ff0000", "a 3-stop gradient", "C&#8217;s"]
    assert not any(re.search(p, line, flags=re.IGNORECASE) for p in PATTERNS.values() for line in clean)


WRITTEN_BY_TOOLS = {"results.md", "zoo_rows.md"}  # benchmarks/camvid_study.py writes OUT/results.md and OUT/zoo_rows.md: named, not pointed to


def test_the_page_scan_finds_study_log_phrasing():
    lines = ["the 68 mIoU goal is not met", "Goals: every head", "was paused for about four minutes",
             "the first 2-core development machine", "on the first machine", "The study's goals", "for want of CPU time"]
    assert all(any(re.search(p, line, flags=re.IGNORECASE) for p in PAGE_PATTERNS.values()) for line in lines)
    clean = ["the CamVid recipes", "a 2-core AMD EPYC", "not measured", "goalkeeper"]
    assert not any(re.search(p, line, flags=re.IGNORECASE) for p in PAGE_PATTERNS.values() for line in clean)


def test_no_pointer_to_a_missing_document():
    # a name like `methods.md` in a comment or a page must be a file: beside the text, from the
    # repository root, or a page of the documentation site
    missing = []
    for path in tracked_text_files():
        if path == Path(__file__) or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for name in re.findall(r"(?<![\w<>*{}/.-])([\w./-]+\.md)\b", line):
                if "://" in line and name in line.split("://", 1)[1]:
                    continue  # a web address
                if Path(name).name in WRITTEN_BY_TOOLS:
                    continue
                if not any((base / name).is_file() for base in (path.parent, ROOT, ROOT / "docs")):
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {name}")
    assert not missing, "pointers to documents that do not exist:\n" + "\n".join(missing)

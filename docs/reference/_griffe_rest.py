"""A griffe extension: the reST markup of reprior's docstrings, rewritten as Markdown for mkdocstrings.

The docstrings are Google style ("Args:", "Returns:") with a few reST constructs
that Markdown does not know.  Before mkdocstrings renders a docstring this
extension rewrites:

* ``.. math::`` blocks into ``$$ ... $$`` display maths (rendered by
  ``pymdownx.arithmatex`` and MathJax; display-style inline maths inside list
  items), and the :math:`x` role into ``$x$``;
* roles such as :func:`name`, :class:`name`, :mod:`name` into inline code;
* reST simple tables (``=====  =====`` borders) into fenced text blocks, so
  their columns stay aligned;
* a paragraph ending in ``::`` (a reST literal block) into one ending in ``:``
  followed by a fenced code block.

Only the rendered text changes; the docstrings in the code stay as they are.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(func|class|mod|meth|attr|data|obj|exc|const|ref|doc):`~?([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_TABLE_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _indented_block(lines: list[str], start: int, base: int) -> int:
    """Index one past the block of lines after ``start`` indented deeper than ``base`` (blank lines included)."""
    end = start
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > base):
        end += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return end


def _dedented(lines: list[str]) -> list[str]:
    """``lines`` without their common indentation."""
    width = min((_indent(line) for line in lines if line.strip()), default=0)
    return [line[width:] for line in lines]


def rest_to_markdown(text: str) -> str:
    """The Markdown form of a docstring's reST constructs (see the module docstring)."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        line = lines[i]
        base = _indent(line)
        pad = " " * base
        if line.strip().startswith(".. math::"):
            end = _indented_block(lines, i + 1, base)
            first = line.strip()[len(".. math::"):].strip()  # maths may start on the directive's line
            body = [b.strip() for b in [first, *lines[i + 1:end]] if b.strip()]
            if base:  # inside a list item: a display block would end the item, so display-style inline maths
                out.append(f"{pad}$\\displaystyle " + " ".join(body) + "$")
            else:
                out += ["$$", *body, "$$"]
            i = end
        elif _TABLE_BORDER.match(line):
            end, borders = i + 1, 1
            while end < len(lines) and borders < 3 and lines[end].strip():
                borders += bool(_TABLE_BORDER.match(lines[end]))
                end += 1
            out += [f"{pad}```text", *(t[base:] if _indent(t) >= base else t for t in lines[i:end]), f"{pad}```"]
            i = end
        elif line.rstrip().endswith("::") and not line.strip().startswith(".."):
            end = _indented_block(lines, i + 1, base)
            body = _dedented(lines[i + 1:end])
            while body and not body[0].strip():
                body.pop(0)
            out += [line.rstrip()[:-1], "", f"{pad}```", *(f"{pad}{b}" if b else "" for b in body), f"{pad}```"]
            i = end
        else:
            out.append(line)
            i += 1
    text = "\n".join(out)
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1)}$", text)
    return _ROLE.sub(lambda m: f"`{m.group(2)}`", text)


class ReSTMarkup(griffe.Extension):
    """Rewrite every loaded docstring with :func:`rest_to_markdown`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rest_to_markdown(obj.docstring.value)

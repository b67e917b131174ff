"""Write ``text_golden.json``: the text each known HTML body and .docx file gave before the
hand-written extraction was replaced by libraries (issue 18, item 9).

Microsoft records carry no ``revision`` (see ``engram_microsoft._normalize``), so their event ids
derive from their text: ``test_msft_text_golden.py`` checks that the library-based extraction
still gives these exact strings, i.e. that a re-sync after the change emits no new events for
unchanged items. The file was generated at the commit that adds it, with the old
``html.parser``/``zipfile`` code; run there as

    .venv/bin/python tests/connectors/microsoft/make_text_golden.py

Running it at a later commit only restates what the current code does.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parents[2]))  # the repository root: examples/

from msft_data import FIXTURES, workspace  # noqa: E402
from msft_files import make_docx, make_docx_body  # noqa: E402

from engram_microsoft import extract_text, html_to_text  # noqa: E402
from engram_microsoft.bench import bench_workspace  # noqa: E402
from examples.kestrel_demo.microsoft_workspace import kestrel_workspace  # noqa: E402

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

# Bodies the way Graph sends them, for what the recorded fixtures and sandboxes do not show.
HTML_CASES = {
    "mention_and_bold": 'Ask <at id="0">Bob Stone</at> about the <b>Q3 plan</b>',
    "two_mentions": '<p><at id="0">Ann</at> and <at id="1">Bob</at>, see below</p>',
    "link_text_differs": '<p>See <a href="https://contoso.example/wiki">the wiki</a> first.</p>',
    "link_text_is_href": '<p><a href="https://contoso.example/x">https://contoso.example/x</a></p>',
    "link_anchor_only": '<p><a href="#top">top</a> and <a href="javascript:void(0)">js</a></p>',
    "link_empty_text": '<p>Go to <a href="https://contoso.example/y"></a></p>',
    "image_alt": '<p>Chart: <img alt="Q3 revenue" src="x.png"> done</p>',
    "image_no_alt": '<p>Pic <img src="x.png"/> end</p>',
    "emoji": '<p>Thanks <emoji id="like" alt="\U0001f44d" title="Like"></emoji></p>',
    "br_lines": "line one<br>line two<br/>line three",
    "headings": "<h1>Title</h1><h2>Part</h2><p>Body text.</p><h3>Sub</h3>text after",
    "nested_lists": "<ul><li>one<ul><li>one.a</li><li>one.b</li></ul></li><li>two</li></ul>",
    "ordered_list": "<ol><li>first</li><li>second</li></ol><p>after</p>",
    "table": "<table><tr><th>Name</th><th>Role</th></tr><tr><td>Ann</td><td>Lead</td></tr></table>",
    "table_tbody": "<table><thead><tr><th>A</th><th>B</th></tr></thead><tbody><tr><td>1</td>"
                   "<td>2</td></tr></tbody></table><p>below</p>",
    "pre": "<p>Run:</p><pre>pip install x\n  --upgrade\n</pre><p>then</p>",
    "codeblock": '<codeblock class="Python"><code>print("hi")\nx = 1</code></codeblock>',
    "blockquote": "<blockquote>quoted words</blockquote><p>reply</p>",
    "entities": "<p>A&nbsp;&amp;&nbsp;B &lt;tag&gt; caf&eacute; &#8212; done</p>",
    "whitespace": "<div>\n   spaced     out\n   text  </div>\n\n<div>  second   </div>",
    "script_style_head": "<html><head><title>T</title><style>p{}</style></head><body><script>x()</script>"
                         "<p>kept</p><noscript>no</noscript></body></html>",
    "spans_divs": "<div><span>inline</span> <span>spans</span></div><div>next div</div>",
    "attachment": '<p>See file</p><attachment id="abc123"></attachment>',
    "system_event": "<systemEventMessage/>",
    "hr": "<p>above</p><hr><p>below</p>",
    "unclosed": "<p>one<p>two<li>three",
    "plain": "just text, no tags",
    "empty": "",
}


def _p(*runs: str) -> str:
    return "<w:p>" + "".join(runs) + "</w:p>"


def _r(text: str) -> str:
    return f'<w:r><w:t xml:space="preserve">{text}</w:t></w:r>'


_TC = "<w:tc><w:tcPr><w:tcW w:w='2000' w:type='dxa'/></w:tcPr>{}</w:tc>"
DOCX_CASES = {
    "paragraphs": make_docx(["Budget 2026", "Travel is capped at 3 trips."]),
    "empty_paragraph_between": make_docx(["Intro", "", "Body"]),
    "tab_and_break": make_docx_body(_p('<w:r><w:t>Name</w:t><w:tab/><w:t>Role</w:t><w:br/><w:t>next</w:t></w:r>')),
    "several_runs": make_docx_body(_p(_r("Budget "), '<w:r><w:rPr><w:b/></w:rPr><w:t>approved</w:t></w:r>',
                                      _r(" today"))),
    "hyperlink": make_docx_body(_p(_r("See "), '<w:hyperlink w:anchor="intro">' + _r("the intro") + "</w:hyperlink>",
                                   _r("."))),
    "table": make_docx_body(
        _p(_r("Before"))
        + "<w:tbl><w:tblGrid><w:gridCol w:w='2000'/><w:gridCol w:w='2000'/></w:tblGrid>"
        + "<w:tr>" + _TC.format(_p(_r("Name"))) + _TC.format(_p(_r("Role"))) + "</w:tr>"
        + "<w:tr>" + _TC.format(_p(_r("Ann"))) + _TC.format(_p(_r("Lead"))) + "</w:tr>"
        + "</w:tbl>" + _p(_r("After"))),
    "tracked_changes": make_docx_body(_p(
        _r("Budget is "), '<w:ins w:id="1" w:author="A" w:date="2026-01-01T00:00:00Z">' + _r("approved") + "</w:ins>",
        '<w:del w:id="2" w:author="A" w:date="2026-01-01T00:00:00Z"><w:r><w:delText>pending</w:delText></w:r></w:del>')),
    "content_control": make_docx_body(
        "<w:sdt><w:sdtContent>" + _p(_r("In a control")) + "</w:sdtContent></w:sdt>" + _p(_r("Outside"))),
}


def _html_inputs() -> dict[str, str]:
    out: dict[str, str] = {}

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            body = node.get("body")
            if isinstance(body, dict) and body.get("content") and body.get("contentType", "html") == "html":
                out.setdefault(body["content"], where)
            if isinstance(node.get("innerHtml"), str):  # a site page's text web part
                out.setdefault(node["innerHtml"], where)
            if "title" in node and isinstance(node.get("content"), str):  # a OneNote page
                out.setdefault(node["content"], where)
            if (node.get("file") or {}).get("mimeType") == "text/html" and node.get("content"):  # a drive file
                out.setdefault(node["content"], where)
            for html in ((node.get("serverProcessedContent") or {}).get("htmlStrings") or []):
                value = html.get("value") if isinstance(html, dict) else html
                if isinstance(value, str):
                    out.setdefault(value, where)
            for k, v in node.items():
                walk(v, where)
        elif isinstance(node, list):
            for v in node:
                walk(v, where)

    for path in sorted(FIXTURES.glob("*")):
        if path.suffix == ".html":
            out.setdefault(path.read_text(), f"fixture {path.name}")
        elif path.suffix == ".json":
            walk(json.loads(path.read_text()), f"fixture {path.name}")
    walk(workspace(), "sandbox tests/connectors/microsoft/msft_data.workspace")
    walk(kestrel_workspace(), "sandbox kestrel_workspace")
    walk(bench_workspace(10), "sandbox bench_workspace(10)")
    for name, html in HTML_CASES.items():
        out.setdefault(html, f"case {name}")
    return out


def main() -> None:
    html = [{"source": src, "html": h, "text": html_to_text(h)} for h, src in _html_inputs().items()]
    docx = [{"source": f"case {name}", "docx_base64": base64.b64encode(data).decode(),
             "text": extract_text(f"{name}.docx", DOCX, data)} for name, data in DOCX_CASES.items()]
    target = HERE / "text_golden.json"
    target.write_text(json.dumps({"html": html, "docx": docx}, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {target}: {len(html)} html, {len(docx)} docx")


if __name__ == "__main__":
    main()

// The "Ask the team" panel. It talks only to this page's own backend (/api/ask); the backend holds
// the Engram API key and calls the Engram server, so no key or Engram URL is ever in the browser.
// The answer streams in as it is made: /api/ask sends one JSON object a line, {"delta": "..."} per
// piece, then {"done": {...}} (or {"error": "..."}). Enter asks; Shift+Enter starts a new line.
"use strict";

const NO_ANSWER = "(no answer)";
const form = document.getElementById("ask-form");
const input = document.getElementById("question");
const button = document.getElementById("ask");
const conversation = document.getElementById("conversation");

function paragraph(className, text = "") {
  const p = document.createElement("p");
  p.className = className;
  p.textContent = text; // textContent, never innerHTML: questions, answers and titles are not markup
  return p;
}

function entry(question) {
  const item = document.createElement("li");
  item.className = "exchange";
  const answer = paragraph("answer pending", "Thinking…");
  const usage = paragraph("usage");
  const sources = paragraph("sources");
  item.append(paragraph("question", question), answer, usage, sources);
  conversation.append(item);
  item.scrollIntoView({ block: "end" });
  return { item, answer, usage, sources };
}

function finish(view, done) {
  const { answer, usage, sources } = view;
  if (done.answer) {
    answer.textContent = done.answer;
  } else {
    answer.textContent = NO_ANSWER;
    answer.classList.add("empty");
  }
  // What the answer cost, next to what a retrieval prompt for the same question would have.
  usage.textContent = `${done.prompt_tokens} prompt tokens`;
  if (done.retrieval_prompt_tokens != null) {
    usage.textContent += ` · retrieval would send ${done.retrieval_prompt_tokens}`;
    usage.dataset.retrievalTokens = String(done.retrieval_prompt_tokens);
  }
  usage.title = `answered by the team's adapter v${done.adapter_version}`;
  usage.dataset.promptTokens = String(done.prompt_tokens);
  // The pages the answer most likely rests on: matched after answering, not sent to the model.
  if (done.sources.length === 0) {
    sources.textContent = "No page of the team matches this answer.";
    return;
  }
  sources.textContent = "Likely from: ";
  done.sources.forEach((source, i) => {
    if (i > 0) sources.append(", ");
    const link = document.createElement(source.url ? "a" : "span");
    link.className = "source";
    link.textContent = source.title;
    if (source.url) {
      link.href = source.url;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
    }
    sources.append(link);
  });
}

async function ask(question, view) {
  const response = await fetch("/api/ask", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ question }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error || `error ${response.status}`);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let started = false;
  let finished = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += value;
    const lines = buffered.split("\n");
    buffered = lines.pop();
    for (const line of lines) {
      if (!line) continue;
      const message = JSON.parse(line);
      if (message.error) throw new Error(message.error);
      if (message.done) {
        finish(view, message.done);
        view.item.dataset.state = "done";
        finished = true;
      } else {
        if (!started) {
          started = true;
          view.answer.classList.remove("pending");
          view.answer.textContent = "";
          view.item.dataset.state = "streaming";
        }
        view.answer.textContent += message.delta;
      }
    }
  }
  if (!finished) throw new Error("The answer was cut off; please ask again.");
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = input.value.trim();
  if (!question || button.disabled) return;
  const view = entry(question);
  button.disabled = true;
  try {
    await ask(question, view);
    input.value = "";
  } catch (err) {
    view.item.dataset.state = "error";
    view.answer.classList.add("error");
    view.answer.textContent = err.message;
  } finally {
    view.answer.classList.remove("pending");
    button.disabled = false;
    input.focus();
  }
});

input.addEventListener("keydown", (event) => {
  // Enter asks; Shift+Enter is a new line; Enter that ends an IME composition only confirms it.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

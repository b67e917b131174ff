// The "Ask the team" panel. It talks only to this page's own backend (/api/ask); the backend holds
// the Engram API key and calls the Engram server, so no key or Engram URL is ever in the browser.
"use strict";

const form = document.getElementById("ask-form");
const input = document.getElementById("question");
const button = document.getElementById("ask");
const conversation = document.getElementById("conversation");

function entry(question) {
  const item = document.createElement("li");
  item.className = "exchange";
  const q = document.createElement("p");
  q.className = "question";
  q.textContent = question; // textContent, never innerHTML: answers are model output
  const a = document.createElement("p");
  a.className = "answer pending";
  a.textContent = "Thinking…";
  const meta = document.createElement("p");
  meta.className = "usage";
  item.append(q, a, meta);
  conversation.append(item);
  return { answer: a, meta };
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = input.value.trim();
  if (!question) return;
  const { answer, meta } = entry(question);
  button.disabled = true;
  try {
    const response = await fetch("/api/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ question }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `error ${response.status}`);
    answer.textContent = body.answer;
    meta.textContent = `${body.prompt_tokens} prompt tokens · adapter v${body.adapter_version}`;
    meta.dataset.promptTokens = String(body.prompt_tokens);
    input.value = "";
  } catch (err) {
    answer.classList.add("error");
    answer.textContent = err.message;
  } finally {
    answer.classList.remove("pending");
    button.disabled = false;
  }
});

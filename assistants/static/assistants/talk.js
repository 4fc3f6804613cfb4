// Talk to an assistant: the browser's speech recognition (or a text box) in, the answer streamed
// token by token over a WebSocket and spoken sentence by sentence while it streams. Speaking (or
// sending) while the assistant talks interrupts it, as on the phone.
(function () {
  "use strict";

  const root = document.getElementById("talk");
  const statusLine = document.getElementById("status");
  const transcript = document.getElementById("transcript");
  const form = document.getElementById("ask");
  const input = document.getElementById("question");
  const micButton = document.getElementById("mic");
  const noMic = document.getElementById("no-mic");
  const speakBox = document.getElementById("speak");
  // The conversation's language: the server switches it when the caller speaks another one.
  let language = root.dataset.language || "en-US";

  const Recognition = window.SpeechRecognition || window.webkitSpeechRecognition;
  const synth = window.speechSynthesis;

  let socket = null;
  let current = null; // the answer being streamed: {item, text, spokenUpTo, heard, done}

  function setStatus(text) {
    statusLine.textContent = text;
  }

  function addLine(role, text) {
    const item = document.createElement("li");
    item.className = role;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    item.appendChild(body);
    transcript.appendChild(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  // --- speaking the answer, sentence by sentence ---------------------------------------------

  function speak(text, onDone) {
    if (!synth || !speakBox.checked || !text.trim()) {
      if (onDone) onDone();
      return;
    }
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.lang = language;
    utterance.onend = () => onDone && onDone();
    utterance.onerror = () => onDone && onDone();
    synth.speak(utterance);
  }

  // Speak every sentence completed since the last call (all of it when the answer is done).
  function speakCompleted(answer) {
    const pending = answer.text.slice(answer.spokenUpTo);
    let cut = -1;
    const ends = /[.!?…。！？]["'”’)\]]*\s/g;
    let match;
    while ((match = ends.exec(pending)) !== null) cut = match.index + match[0].length;
    if (answer.done) cut = pending.length;
    if (cut <= 0) return;
    const sentence = pending.slice(0, cut);
    answer.spokenUpTo += cut;
    speak(sentence, () => {
      answer.heard += sentence;
    });
  }

  function interruptAnswer() {
    if (!current) return;
    const answer = current;
    const speaking = synth && synth.speaking;
    if (answer.done && !speaking) return;
    if (synth) synth.cancel();
    answer.item.classList.add("interrupted");
    send({ type: "interrupt", heard: speakBox.checked ? answer.heard : answer.text });
    current = null;
  }

  // --- the conversation socket ---------------------------------------------------------------

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function ask(text) {
    text = text.trim();
    if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
    interruptAnswer();
    addLine("caller", text);
    send({ type: "prompt", text: text });
    setStatus("Thinking…");
  }

  function onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (error) {
      return;
    }
    if (message.type === "ready") {
      setStatus("Connected. Ask something.");
      if (message.greeting) {
        addLine("assistant", message.greeting);
        speak(message.greeting);
      }
    } else if (message.type === "text") {
      // A finished answer stays `current` while it is spoken (so speaking can interrupt it);
      // the next answer's first frame starts a line of its own.
      if (!current || current.done) {
        current = { item: addLine("assistant", ""), text: "", spokenUpTo: 0, heard: "", done: false };
      }
      current.text += message.token;
      current.item.querySelector(".text").textContent = current.text;
      current.done = Boolean(message.last);
      speakCompleted(current);
      if (message.last) setStatus("Your turn.");
    } else if (message.type === "latency") {
      const target = current ? current.item : transcript.lastElementChild;
      if (target) {
        const note = document.createElement("span");
        note.className = "latency";
        note.textContent =
          "first token " + message.first_token_ms + " ms · whole answer " + message.total_ms + " ms";
        target.appendChild(note);
      }
    } else if (message.type === "language") {
      language = message.language;
      root.dataset.language = language; // what the page speaks and listens in, for all to see
      if (recognition) {
        recognition.lang = language;
        if (listening) recognition.stop(); // it starts again (onend) in the new language
      }
    } else if (message.type === "end") {
      setStatus(message.message || (message.transfer ? "Transferred to a person." : "The conversation ended."));
    }
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + root.dataset.socketPath);
    socket.onmessage = onMessage;
    socket.onclose = () => {
      setStatus("Disconnected. Reload the page to talk again.");
      if (recognition) recognition.stop();
    };
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ask(input.value);
    input.value = "";
  });

  // --- the microphone ------------------------------------------------------------------------

  let recognition = null;
  let listening = false;
  if (Recognition) {
    recognition = new Recognition();
    recognition.lang = language;
    recognition.continuous = true;
    recognition.interimResults = true;
    recognition.onspeechstart = interruptAnswer; // the caller talks over the assistant
    recognition.onresult = (event) => {
      for (let i = event.resultIndex; i < event.results.length; i++) {
        if (event.results[i].isFinal) ask(event.results[i][0].transcript);
      }
    };
    recognition.onend = () => {
      if (listening) recognition.start(); // keep listening until switched off
    };
    recognition.onerror = (event) => {
      if (["not-allowed", "service-not-allowed", "audio-capture", "network"].includes(event.error)) {
        listening = false;
        micButton.hidden = true;
        noMic.hidden = false; // no microphone here after all: the text box remains
      }
    };
    micButton.hidden = false;
    micButton.addEventListener("click", () => {
      listening = !listening;
      micButton.classList.toggle("listening", listening);
      micButton.textContent = listening ? "⏹ Stop listening" : "🎤 Hold a conversation";
      if (listening) recognition.start();
      else recognition.stop();
    });
  } else {
    noMic.hidden = false;
  }

  connect();
})();

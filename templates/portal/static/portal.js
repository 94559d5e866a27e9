// A little help, nothing the pages need to work: size document frames to their content,
// and ask before forms that cannot be undone.
document.addEventListener("DOMContentLoaded", () => {
  for (const frame of document.querySelectorAll("iframe.doc-frame")) {
    const fit = () => {
      try {
        frame.style.height = frame.contentDocument.documentElement.scrollHeight + 24 + "px";
      } catch (e) { /* keep the default height */ }
    };
    frame.addEventListener("load", fit);
    fit();
  }
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});

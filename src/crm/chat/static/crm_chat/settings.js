// Settings → Chat Widgets: live launcher preview and the "Copy" button.
// No inline scripts or handlers anywhere, and styles are set through
// element.style (CSSOM), which a strict style-src CSP still allows.
(function () {
  "use strict";

  var COLOR_RE = /^#?([0-9a-fA-F]{6})$/;
  var DEFAULT_WELCOME = "Hi! How can we help?";

  // "#2563EB" or "2563eb" -> "#2563eb"; anything else -> null (preview keeps its colour).
  function normaliseColor(value) {
    var match = COLOR_RE.exec((value || "").trim());
    return match ? "#" + match[1].toLowerCase() : null;
  }

  function setupPreview(form) {
    var preview = document.querySelector("[data-widget-preview]");
    if (!preview) return;
    var launcher = preview.querySelector("[data-preview-launcher]");
    var welcome = preview.querySelector("[data-preview-welcome]");
    var text = form.querySelector("[data-color-text]");
    var picker = form.querySelector("[data-color-picker]");
    var position = form.elements.namedItem("position");
    var welcomeInput = form.elements.namedItem("welcome_message");

    function paint(color) {
      launcher.style.backgroundColor = color;
      welcome.style.borderColor = color;
    }

    function place() {
      preview.classList.toggle("is-left", position.value === "bottom-left");
    }

    paint(preview.dataset.color);
    if (picker && text) {
      // The picker is progressive enhancement: without this script the text box alone works.
      picker.hidden = false;
      picker.addEventListener("input", function () {
        text.value = picker.value;
        paint(picker.value);
      });
      text.addEventListener("input", function () {
        var color = normaliseColor(text.value);
        if (!color) return;
        picker.value = color;
        paint(color);
      });
    }
    if (position) {
      position.addEventListener("change", place);
      place();
    }
    if (welcomeInput && welcome) {
      welcomeInput.addEventListener("input", function () {
        // textContent, never innerHTML: this is text the user typed.
        welcome.textContent = welcomeInput.value.trim() || DEFAULT_WELCOME;
      });
    }
  }

  function setupCopy(button) {
    var id = button.getAttribute("data-copy-target");
    var source = document.getElementById(id);
    var status = document.querySelector('[data-copy-status="' + id + '"]');
    var timer = null;
    if (!source) return;

    function showStatus(message) {
      if (!status) return;
      status.textContent = message;
      clearTimeout(timer);
      timer = setTimeout(function () {
        status.textContent = "";
      }, 4000);
    }

    // Select the text so the user can copy it by hand; execCommand covers older browsers.
    function fallbackCopy() {
      source.focus();
      source.select();
      var copied = false;
      try {
        copied = document.execCommand("copy");
      } catch (e) {
        copied = false;
      }
      showStatus(copied ? "Copied" : "Selected: press Ctrl+C (\u2318C on a Mac) to copy");
    }

    button.addEventListener("click", function () {
      // navigator.clipboard exists only in secure contexts (https or localhost).
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(source.value).then(function () {
          showStatus("Copied");
        }, fallbackCopy);
      } else {
        fallbackCopy();
      }
    });
  }

  var form = document.querySelector("[data-widget-form]");
  if (form) setupPreview(form);
  var buttons = document.querySelectorAll("[data-copy-target]");
  for (var i = 0; i < buttons.length; i++) setupCopy(buttons[i]);
})();

// Password strength while typing: asks the portal (which runs zxcvbn with the account's own words) how
// strong the typed password is and shows the answer under the field. The server checks again on submit;
// without JavaScript the form works the same, only without the live hint.
(function () {
  "use strict";
  var field = document.querySelector("input[data-strength]");
  var out = document.getElementById("strength");
  if (!field || !out) { return; }
  var form = field.form;
  var tokenInput = form ? form.querySelector("input[name=token]") : null;
  var timer = null;
  var asked = 0;
  function show(text, ok) {
    out.textContent = text;
    out.className = ok ? "notice ok" : "notice error";
  }
  function ask() {
    var password = field.value;
    if (!password) { out.textContent = ""; out.className = "muted"; return; }
    var mine = ++asked;
    fetch("/account/password/strength", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ password: password, token: tokenInput ? tokenInput.value : null })
    }).then(function (r) { return r.json(); }).then(function (a) {
      if (mine !== asked) { return; }
      show(a.message, a.ok);
    }).catch(function () { /* the server still checks on submit */ });
  }
  field.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(ask, 250);
  });
})();

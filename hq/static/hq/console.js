// Copy buttons beside short ids: the full id goes to the clipboard. Without JavaScript the full id
// is in the link and its hover text.
document.addEventListener("click", function (event) {
  var button = event.target.closest ? event.target.closest(".hq-copy") : null;
  if (!button) return;
  event.preventDefault();
  var text = button.getAttribute("data-copy");
  var done = function () { button.classList.add("copied"); button.textContent = "copied"; };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
  } else {
    var area = document.createElement("textarea");
    area.value = text; document.body.appendChild(area); area.select();
    try { document.execCommand("copy"); done(); } finally { document.body.removeChild(area); }
  }
});

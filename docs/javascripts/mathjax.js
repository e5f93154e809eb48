// MathJax 3 configuration for pymdownx.arithmatex (generic mode): the math is left in the
// page as \( ... \) and \[ ... \] and typeset in the browser.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex"
  }
};

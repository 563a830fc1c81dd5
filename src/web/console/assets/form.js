// The console's forms, checked as the user types: each field's message
// appears beside it (in its `-error` element) and the form is not sent
// while one is wrong. The server checks everything again; its violations
// arrive in the same elements. No build step, no dependencies.
(function () {
  'use strict';

  function ipv4(text) {
    var parts = text.split('.');
    if (parts.length !== 4) return null;
    var value = 0;
    for (var i = 0; i < 4; i++) {
      if (!/^\d{1,3}$/.test(parts[i]) || Number(parts[i]) > 255) return null;
      value = value * 256 + Number(parts[i]);
    }
    return value;
  }

  function ipv6(text) {
    if (!/^[0-9a-fA-F:.]+$/.test(text) || text.split('::').length > 2) return false;
    var groups = text.split(':').filter(function (g) { return g !== ''; });
    var hexOk = groups.every(function (g) { return /^[0-9a-fA-F]{1,4}$/.test(g); });
    return hexOk && (text.indexOf('::') >= 0 ? groups.length < 8 : groups.length === 8);
  }

  // Why `line` is not a prefix such as 198.51.100.0/24, or '' when it is one.
  function prefixProblem(line) {
    var slash = line.split('/');
    if (slash.length !== 2 || !/^\d{1,3}$/.test(slash[1])) {
      return 'needs a length after a slash, such as 203.0.113.0/24';
    }
    var length = Number(slash[1]);
    var v4 = ipv4(slash[0]);
    if (v4 !== null) {
      if (length > 32) return 'an IPv4 prefix is at most /32';
      var hostBits = Math.pow(2, 32 - length);
      if (v4 % hostBits !== 0) return 'has host bits set (the prefix must start its block)';
      return '';
    }
    if (ipv6(slash[0])) return length > 128 ? 'an IPv6 prefix is at most /128' : '';
    return 'is not an IPv4 or IPv6 address';
  }

  function problemOf(field) {
    field.setCustomValidity('');
    if (field.dataset.check === 'prefixes') {
      var lines = field.value.split('\n');
      for (var i = 0; i < lines.length; i++) {
        var line = lines[i].trim();
        if (line === '') continue;
        var problem = prefixProblem(line);
        if (problem) return 'Line ' + (i + 1) + ': ' + line + ' ' + problem + '.';
      }
    }
    if (field.validity.valueMissing) return 'This field is required.';
    if (field.validity.patternMismatch) return field.title || 'This is not in the expected form.';
    if (!field.validity.valid) return field.validationMessage;
    return '';
  }

  function check(field) {
    var problem = problemOf(field);
    field.setCustomValidity(problem);
    var out = document.getElementById(field.id + '-error');
    if (out) out.textContent = problem;
    if (problem) field.setAttribute('aria-invalid', 'true');
    else field.removeAttribute('aria-invalid');
    return problem === '';
  }

  function fieldsOf(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.id && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA') && el.type !== 'hidden';
    });
  }

  document.addEventListener('input', function (event) {
    var form = event.target.form;
    if (form && form.hasAttribute('data-validate') && event.target.id) check(event.target);
  });

  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (!form.hasAttribute('data-validate')) return;
    var wrong = fieldsOf(form).filter(function (field) { return !check(field); });
    if (wrong.length > 0) {
      event.preventDefault();
      wrong[0].focus();
    }
  });

  // After the server refused a form, take keyboard and screen-reader users
  // to the summary of what to correct.
  document.addEventListener('DOMContentLoaded', function () {
    var summary = document.getElementById('form-errors');
    if (summary) summary.focus();
  });
})();

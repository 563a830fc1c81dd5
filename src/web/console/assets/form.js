// The console's forms, checked as the user types: each field's message
// appears beside it (in its `-error` element) and the form is not sent
// while one is wrong. The server checks everything again; its violations
// arrive in the same elements. Document uploads (`form.upload`) are typed
// by their first bytes before they are sent, then streamed as the request
// body with a progress bar; a CSV chosen for the import is read into its
// text area. No build step, no dependencies.
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

  // What a file's first bytes say it is: one of the accepted types, or null.
  function documentType(bytes) {
    var starts = function (sig) {
      return sig.every(function (b, i) { return bytes[i] === b; });
    };
    if (starts([0x25, 0x50, 0x44, 0x46, 0x2d])) return 'PDF';
    if (starts([0xff, 0xd8, 0xff])) return 'JPEG';
    if (starts([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'PNG';
    return null;
  }

  // A random request id (RFC 4122 version 4), in any browser context.
  function requestId() {
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join('');
    return hex.slice(0, 8) + '-' + hex.slice(8, 12) + '-' + hex.slice(12, 16) + '-' + hex.slice(16, 20) + '-' + hex.slice(20);
  }

  function upload(form) {
    var file = form.elements.file.files[0];
    var error = form.querySelector('.error');
    var progress = form.querySelector('progress');
    var button = form.querySelector('button');
    error.textContent = '';
    if (!file) return;
    file.slice(0, 8).arrayBuffer().then(function (head) {
      if (!documentType(new Uint8Array(head))) {
        error.textContent = file.name + ' is not a PDF, JPEG or PNG file (whatever its name says); choose a scan in one of those formats.';
        return;
      }
      var query = 'registration=' + encodeURIComponent(form.dataset.registration) +
        '&type=' + encodeURIComponent(form.elements.type.value) +
        '&name=' + encodeURIComponent(file.name);
      var xhr = new XMLHttpRequest();
      xhr.open('POST', '/console/documents/upload?' + query);
      xhr.setRequestHeader('X-CSRF-Token', form.dataset.csrf);
      xhr.setRequestHeader('X-Request-Id', requestId());
      xhr.setRequestHeader('Content-Type', 'application/octet-stream');
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) progress.value = Math.round(100 * e.loaded / e.total);
      };
      xhr.onload = function () {
        if (xhr.status === 200) {
          window.location.reload();
          return;
        }
        var said = '';
        try { said = JSON.parse(xhr.responseText).message; } catch (ignored) { said = ''; }
        error.textContent = said || 'The upload was refused (' + xhr.status + ').';
        progress.hidden = true;
        button.disabled = false;
      };
      xhr.onerror = function () {
        error.textContent = 'The connection failed; nothing was stored. Try again.';
        progress.hidden = true;
        button.disabled = false;
      };
      progress.hidden = false;
      progress.value = 0;
      button.disabled = true;
      xhr.send(file);
    });
  }

  // A chosen file (the CSV import) read into the text area it names.
  document.addEventListener('change', function (event) {
    var input = event.target;
    var target = input.getAttribute && document.getElementById(input.getAttribute('data-fill') || '');
    if (!target || !input.files || !input.files[0]) return;
    var reader = new FileReader();
    reader.onload = function () { target.value = reader.result; };
    reader.readAsText(input.files[0]);
  });

  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (!form.classList.contains('upload')) return;
    event.preventDefault();
    upload(form);
  });
})();

/* The fast route in one pass: a run of flat records (XML that expat has already accepted) as JSON.
 *
 * records_json(run, item, fields, absent, max_depth, max_text) -> bytes | None
 *
 * ``run`` starts inside the page's container (``<results>``), at a record's opening tag, and ends right
 * after a record's closing tag. The result is ``[{"name":"text",...},...]``, one object per record and
 * one member per element directly inside it, for ``msgspec`` to decode into the page's structs; or
 * ``None`` where the reference route's rules need more than this pass knows (the caller then takes the
 * Python fast route, which declines further to the tree and the reference route, where errors are
 * raised). The rules are the reference route's (_reference.py):
 *
 *   - a field's text is its character data and CDATA, references resolved, CR and CRLF read as LF;
 *     comments and processing instructions are no text; attributes are ignored everywhere;
 *   - an empty field whose name is in ``absent`` (a date or number) is left out; every other empty
 *     field is "";
 *   - an element inside a record that has children is skipped whole if it is not a field (a vendor's
 *     <customFields>); inside a field it is an error (None here); elements between records are skipped;
 *   - text outside fields is ignored.
 *
 * Elements directly inside a record that are no field are written too: msgspec skips unknown keys, and
 * a duplicate key is decoded as the reference route reads it, the last one wins.
 *
 * Exact only on bytes a validating expat has accepted (well-formed, no DTD, so only the five
 * predefined entities and character references): it does not check what expat checks (end tags
 * inside skipped elements, names, UTF-8, characters XML forbids, what follows the last record).
 * Memory safety does not rest on that: every read is bounded by the run's end, the output grows on
 * demand, and what it cannot read (a construct without its end, a reference it does not know)
 * returns None. So does a depth over ``max_depth``, or more than ``max_text`` bytes of text in one
 * element directly inside a record (counted as written in the XML, before references and line ends
 * are read: never fewer than the characters the reference route counts), so the errors for them come
 * from the reference route. Linear: each byte is looked at a bounded number of times, every scan
 * moves forward, and the ends of comments, PIs and CDATA sections are found with memmem from where
 * they start.
 */
#define _GNU_SOURCE /* memmem */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#if defined(__GNUC__)
#define HOT_INLINE static inline __attribute__((always_inline))
#define COLD static __attribute__((noinline, cold))
#else
#define HOT_INLINE static inline
#define COLD static
#endif

/* The output: a bytes object written in place and resized as it grows (no copy at the end). */
typedef struct {
    PyObject *bytes;
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Out;

COLD int
grow(Out *out, Py_ssize_t extra)
{
    if (extra > PY_SSIZE_T_MAX / 2 - out->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t cap = out->cap * 2;
    if (cap < out->len + extra) {
        cap = out->len + extra;
    }
    if (_PyBytes_Resize(&out->bytes, cap) < 0) { /* sets out->bytes to NULL */
        return -1;
    }
    out->data = PyBytes_AS_STRING(out->bytes);
    out->cap = cap;
    return 0;
}

HOT_INLINE int
put(Out *out, const char *bytes, Py_ssize_t n)
{
    if (out->len + n > out->cap && grow(out, n) < 0) {
        return -1;
    }
    memcpy(out->data + out->len, bytes, (size_t)n);
    out->len += n;
    return 0;
}

/* Bytes of text that JSON needs escaped, or that start a reference or a line end (XML's & and CR). */
static unsigned char SPECIAL[256];
/* Bytes that end a tag's name: whitespace, '/', '>'. */
static unsigned char NAME_END[256];

static void
init_tables(void)
{
    NAME_END[' '] = NAME_END['\t'] = NAME_END['\n'] = NAME_END['\r'] = 1;
    NAME_END['/'] = NAME_END['>'] = 1;
    for (int c = 0; c < 0x20; c++) {
        SPECIAL[c] = 1;
    }
    SPECIAL['"'] = 1;
    SPECIAL['\\'] = 1;
    SPECIAL['&'] = 1;
}

/* One code point as UTF-8, JSON-escaped where JSON asks for it (tab, LF and CR by their short
 * escapes: the ones text holds). */
COLD int
put_code_point(Out *out, unsigned long code)
{
    char buf[8];
    Py_ssize_t n;
    if (code == '"' || code == '\\' || code == '\t' || code == '\n' || code == '\r') {
        buf[0] = '\\';
        buf[1] = code == '\t' ? 't' : code == '\n' ? 'n' : code == '\r' ? 'r' : (char)code;
        n = 2;
    }
    else if (code < 0x20) {
        n = (Py_ssize_t)snprintf(buf, sizeof buf, "\\u%04lx", code);
    }
    else if (code < 0x80) {
        buf[0] = (char)code;
        n = 1;
    }
    else if (code < 0x800) {
        buf[0] = (char)(0xC0 | (code >> 6));
        buf[1] = (char)(0x80 | (code & 0x3F));
        n = 2;
    }
    else if (code < 0x10000) {
        buf[0] = (char)(0xE0 | (code >> 12));
        buf[1] = (char)(0x80 | ((code >> 6) & 0x3F));
        buf[2] = (char)(0x80 | (code & 0x3F));
        n = 3;
    }
    else {
        buf[0] = (char)(0xF0 | (code >> 18));
        buf[1] = (char)(0x80 | ((code >> 12) & 0x3F));
        buf[2] = (char)(0x80 | ((code >> 6) & 0x3F));
        buf[3] = (char)(0x80 | (code & 0x3F));
        n = 4;
    }
    return put(out, buf, n);
}

/* A reference (``p`` just after its ``&``, ``end`` the text's end) written decoded: 1 done, 0 not
 * something this pass reads (None), -1 an error set. ``*next`` is set past its ``;``. */
static int
put_reference(Out *out, const char *p, const char *end, const char **next)
{
    const char *semi = memchr(p, ';', (size_t)(end - p));
    if (semi == NULL) {
        return 0;
    }
    Py_ssize_t n = semi - p;
    *next = semi + 1;
    if (n >= 2 && p[0] == '#') {
        unsigned long code = 0;
        const char *d = p + 1;
        int hex = (*d == 'x' || *d == 'X');
        if (hex) {
            d++;
        }
        if (d == semi) {
            return 0;
        }
        for (; d < semi; d++) {
            int v;
            char c = *d;
            if (c >= '0' && c <= '9') {
                v = c - '0';
            }
            else if (hex && c >= 'a' && c <= 'f') {
                v = c - 'a' + 10;
            }
            else if (hex && c >= 'A' && c <= 'F') {
                v = c - 'A' + 10;
            }
            else {
                return 0;
            }
            /* Any number of leading zeros (&#x0000000041; is "A"); no value past Unicode's last. */
            code = code * (hex ? 16 : 10) + (unsigned long)v;
            if (code > 0x10FFFF) {
                return 0;
            }
        }
        /* What XML 1.0 allows as a character: no NUL, no other C0 control but tab, LF and CR, no
         * surrogate, no U+FFFE / U+FFFF (expat refuses them all; here they are not decoded). */
        if ((code < 0x20 && code != 0x9 && code != 0xA && code != 0xD) || (code >= 0xD800 && code <= 0xDFFF) ||
            code == 0xFFFE || code == 0xFFFF) {
            return 0;
        }
        return put_code_point(out, code) < 0 ? -1 : 1;
    }
    const char *value;
    if (n == 2 && p[0] == 'l' && p[1] == 't') {
        value = "<";
    }
    else if (n == 2 && p[0] == 'g' && p[1] == 't') {
        value = ">";
    }
    else if (n == 3 && memcmp(p, "amp", 3) == 0) {
        value = "&";
    }
    else if (n == 4 && memcmp(p, "quot", 4) == 0) {
        value = "\\\"";
    }
    else if (n == 4 && memcmp(p, "apos", 4) == 0) {
        value = "'";
    }
    else {
        return 0;
    }
    return put(out, value, (Py_ssize_t)strlen(value)) < 0 ? -1 : 1;
}

/* Text from ``p`` to ``end`` written as the inside of a JSON string. ``references``: character data
 * (references resolved) rather than a CDATA section's content (taken as it is). 1 done, 0 None, -1
 * error. */
static int
put_text(Out *out, const char *p, const char *end, int references)
{
    while (p < end) {
        const char *run = p;
        while (p < end && !SPECIAL[(unsigned char)*p]) {
            p++;
        }
        if (p > run && put(out, run, p - run) < 0) {
            return -1;
        }
        if (p == end) {
            break;
        }
        unsigned char c = (unsigned char)*p;
        if (c == '&' && references) {
            const char *next = p;
            int done = put_reference(out, p + 1, end, &next);
            if (done <= 0) {
                return done;
            }
            p = next;
            continue;
        }
        p++;
        if (c == '\r') {
            /* XML's end-of-line handling: CRLF and a lone CR are both one LF. */
            if (p < end && *p == '\n') {
                p++;
            }
            c = '\n';
        }
        /* A quote, a backslash, a control character, or a CDATA section's '&': ASCII all. */
        if (put_code_point(out, c) < 0) {
            return -1;
        }
    }
    return 1;
}

static int
in_names(PyObject *names, const char *name, Py_ssize_t n)
{
    Py_ssize_t count = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(names, i);
        if (PyBytes_GET_SIZE(item) == n && memcmp(PyBytes_AS_STRING(item), name, (size_t)n) == 0) {
            return 1;
        }
    }
    return 0;
}

static int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

typedef struct {
    const char *item;
    Py_ssize_t item_len;
    PyObject *fields;
    PyObject *absent;
    long max_depth;
    Py_ssize_t max_text;
} Rules;

/* The run as JSON into ``out``: 1 done, 0 None, -1 error set. */
static int
rewrite(Out *out, const char *p, const char *end, const Rules *rules)
{
    long depth = 2;           /* inside the container: records open at 3, their fields at 4 */
    long skip = 0;            /* the depth of an element skipped with everything inside it, or 0 */
    int in_field = 0;         /* inside a depth-4 element, writing its text */
    const char *field = NULL; /* its name */
    Py_ssize_t field_len = 0;
    Py_ssize_t member = 0; /* where its member starts in ``out`` (to take it back) */
    Py_ssize_t text = 0;   /* bytes of its text so far */
    int members = 0;       /* members of the record so far */
    int records = 0;

    if (put(out, "[", 1) < 0) {
        return -1;
    }
    while (p < end) {
        if (*p != '<') {
            const char *lt = memchr(p, '<', (size_t)(end - p));
            if (lt == NULL) {
                lt = end;
            }
            if (in_field) {
                text += lt - p;
                if (text > rules->max_text) {
                    return 0;
                }
                int done = put_text(out, p, lt, 1);
                if (done <= 0) {
                    return done;
                }
            }
            p = lt;
            continue;
        }
        if (end - p < 2) {
            return 0;
        }
        char c = p[1];
        if (c == '!') {
            if (end - p >= 4 && memcmp(p, "<!--", 4) == 0) {
                const char *close = memmem(p + 4, (size_t)(end - p - 4), "-->", 3);
                if (close == NULL) {
                    return 0;
                }
                p = close + 3;
                continue;
            }
            if (end - p >= 9 && memcmp(p, "<![CDATA[", 9) == 0) {
                const char *close = memmem(p + 9, (size_t)(end - p - 9), "]]>", 3);
                if (close == NULL) {
                    return 0;
                }
                if (in_field) {
                    text += close - (p + 9);
                    if (text > rules->max_text) {
                        return 0;
                    }
                    int done = put_text(out, p + 9, close, 0);
                    if (done <= 0) {
                        return done;
                    }
                }
                p = close + 3;
                continue;
            }
            return 0; /* a declaration: never inside a document's records */
        }
        if (c == '?') {
            const char *close = memmem(p + 2, (size_t)(end - p - 2), "?>", 2);
            if (close == NULL) {
                return 0;
            }
            p = close + 2;
            continue;
        }
        if (c == '/') {
            const char *name = p + 2;
            const char *q = name;
            while (q < end && !NAME_END[(unsigned char)*q]) {
                q++;
            }
            Py_ssize_t name_len = q - name;
            while (q < end && is_space(*q)) {
                q++;
            }
            if (q == end || *q != '>' || name_len == 0) {
                return 0;
            }
            p = q + 1;
            if (skip) {
                if (depth == skip) {
                    skip = 0;
                }
                depth--;
                continue;
            }
            if (depth == 4) {
                if (!in_field || name_len != field_len || memcmp(name, field, (size_t)name_len) != 0) {
                    return 0;
                }
                in_field = 0;
                if (text == 0 && in_names(rules->absent, field, field_len)) {
                    out->len = member; /* an empty date or number: absent */
                }
                else {
                    if (put(out, "\"", 1) < 0) {
                        return -1;
                    }
                    members++;
                }
            }
            else if (depth == 3) {
                if (name_len != rules->item_len || memcmp(name, rules->item, (size_t)name_len) != 0) {
                    return 0;
                }
                if (put(out, "}", 1) < 0) {
                    return -1;
                }
                records++;
            }
            else {
                return 0; /* the container's end, or unbalanced */
            }
            depth--;
            continue;
        }
        /* An opening tag: its name, then attributes (skipped, quoted values may hold '>'), then an
         * optional '/'. */
        const char *name = p + 1;
        const char *q = name;
        while (q < end && !NAME_END[(unsigned char)*q]) {
            q++;
        }
        Py_ssize_t name_len = q - name;
        int closed = 0;
        while (q < end && *q != '>') {
            if (*q == '"' || *q == '\'') {
                const char *quote = memchr(q + 1, *q, (size_t)(end - q - 1));
                if (quote == NULL) {
                    return 0;
                }
                q = quote + 1;
                closed = 0;
                continue;
            }
            closed = (*q == '/');
            q++;
        }
        if (q == end || name_len == 0) {
            return 0;
        }
        p = q + 1;
        long opened = depth + 1;
        if (opened > rules->max_depth) {
            return 0;
        }
        if (skip) {
            depth += !closed;
            continue;
        }
        if (opened == 3) {
            if (name_len != rules->item_len || memcmp(name, rules->item, (size_t)name_len) != 0) {
                if (!closed) {
                    skip = opened; /* an element between records */
                    depth = opened;
                }
                continue;
            }
            if ((records && put(out, ",", 1) < 0) || put(out, "{", 1) < 0) {
                return -1;
            }
            members = 0;
            if (closed) {
                if (put(out, "}", 1) < 0) {
                    return -1;
                }
                records++;
                continue;
            }
            depth = opened;
        }
        else if (opened == 4) {
            for (const char *k = name; k < name + name_len; k++) {
                if (*k == '"' || *k == '\\' || (unsigned char)*k < 0x20) {
                    return 0; /* no XML name (expat refuses it): never written as a JSON key */
                }
            }
            member = out->len;
            if ((members && put(out, ",", 1) < 0) || put(out, "\"", 1) < 0 || put(out, name, name_len) < 0 ||
                put(out, "\":\"", 3) < 0) {
                return -1;
            }
            if (closed) {
                if (in_names(rules->absent, name, name_len)) {
                    out->len = member;
                }
                else {
                    if (put(out, "\"", 1) < 0) {
                        return -1;
                    }
                    members++;
                }
                continue;
            }
            in_field = 1;
            field = name;
            field_len = name_len;
            text = 0;
            depth = opened;
        }
        else if (opened == 5) {
            /* An element inside a record's child: an error inside a field (the reference route says
             * which), else the child is an unknown element with children, skipped whole. */
            if (in_names(rules->fields, field, field_len)) { /* depth 4 here is always in_field */
                return 0;
            }
            in_field = 0;
            out->len = member;
            skip = 4;
            depth = closed ? 4 : opened;
        }
        else {
            return 0;
        }
    }
    if (depth != 2 || skip || in_field || records == 0) {
        return 0;
    }
    return put(out, "]", 1) < 0 ? -1 : 1;
}

static int
names_tuple(PyObject *names, const char *what)
{
    if (!PyTuple_Check(names)) {
        PyErr_Format(PyExc_TypeError, "%s must be a tuple of bytes", what);
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(names, i))) {
            PyErr_Format(PyExc_TypeError, "%s must be a tuple of bytes", what);
            return -1;
        }
    }
    return 0;
}

static PyObject *
records_json(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer run, item;
    PyObject *fields, *absent;
    long max_depth;
    Py_ssize_t max_text;
    if (!PyArg_ParseTuple(args, "y*y*OOln:records_json", &run, &item, &fields, &absent, &max_depth, &max_text)) {
        return NULL;
    }
    PyObject *result = NULL;
    Out out = {NULL, NULL, 0, 0};
    Rules rules = {item.buf, item.len, fields, absent, max_depth, max_text};
    int status = -1;
    if (names_tuple(fields, "fields") == 0 && names_tuple(absent, "absent") == 0) {
        /* JSON is about 0.6-0.8x the XML of a run; escapes and self-closing fields (<a/> is ,"a":"")
         * make it up to 2x on valid input (6x on bytes expat would refuse): it grows by doubling. */
        out.bytes = PyBytes_FromStringAndSize(NULL, run.len + 64);
        if (out.bytes != NULL) {
            out.data = PyBytes_AS_STRING(out.bytes);
            out.cap = run.len + 64;
            status = rewrite(&out, run.buf, (const char *)run.buf + run.len, &rules);
        }
    }
    if (status == 0) {
        result = Py_NewRef(Py_None);
    }
    else if (status > 0 && _PyBytes_Resize(&out.bytes, out.len) == 0) {
        result = out.bytes;
        out.bytes = NULL;
    }
    Py_XDECREF(out.bytes);
    PyBuffer_Release(&run);
    PyBuffer_Release(&item);
    return result;
}

static PyMethodDef methods[] = {
    {"records_json", records_json, METH_VARARGS,
     "records_json(run, item, fields, absent, max_depth, max_text) -> bytes | None\n\n"
     "A run of flat records (XML an expat has accepted) as one JSON array, or None where the\n"
     "reference route's rules need more than one pass (see _speedups.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_speedups",
    .m_doc = "The fast route's XML-to-JSON rewrite in C (see _speedups.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    init_tables();
    return PyModule_Create(&module);
}

/* The passes over every byte of a file, in C: byte histograms, printable-ASCII and UTF-16LE runs and marker counts
 * (the feature vector), high-nibble counts by block and high-nibble transitions (the histograms input). Each loop runs with the GIL released, so reader threads overlap. numpy did the
 * same with whole-array masks, several passes a chunk; benchmarks/results/bytepass.md has the timings
 * that justified this module, bytepass-printable.md those of the printable runs as bit masks (twice as
 * fast as byte masks). Only bytes are read: nothing here interprets what a file says. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MIN_RUN 5 /* a printable run counts from this many bytes (``strings``' default) */

/* windows() and C below spell out MIN_RUN terms */
_Static_assert(MIN_RUN == 5, "windows() and C are written for runs of 5");

static int printable(unsigned char c) { return (unsigned char)(c - 0x20) < 0x7F - 0x20; }

PyDoc_STRVAR(histogram_doc,
             "histogram(data, out)\n--\n\n"
             "Add the count of each byte value in ``data`` to ``out`` (a writable buffer of 256 int64).");

static PyObject *histogram(PyObject *self, PyObject *args) {
    Py_buffer data, out;
    if (!PyArg_ParseTuple(args, "y*w*", &data, &out)) return NULL;
    if (out.len != 256 * (Py_ssize_t)sizeof(int64_t) || out.itemsize != (Py_ssize_t)sizeof(int64_t)) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "out must hold 256 int64");
        return NULL;
    }
    const unsigned char *s = data.buf;
    Py_ssize_t n = data.len, i = 0;
    int64_t *dst = out.buf;
    Py_BEGIN_ALLOW_THREADS
    uint64_t t[4][256]; /* four tables: consecutive equal bytes do not wait on one counter */
    memset(t, 0, sizeof t);
    for (; i + 4 <= n; i += 4) {
        t[0][s[i]]++;
        t[1][s[i + 1]]++;
        t[2][s[i + 2]]++;
        t[3][s[i + 3]]++;
    }
    for (; i < n; i++) t[0][s[i]]++;
    for (int b = 0; b < 256; b++) dst[b] += (int64_t)(t[0][b] + t[1][b] + t[2][b] + t[3][b]);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(printable_runs_doc,
             "printable_runs(data, run, pending)\n--\n\n"
             "The bytes of ``data`` that lie in runs of at least 5 printable ASCII bytes (0x20-0x7e),\n"
             "run together, for a stream fed in pieces. ``run`` is the length of the run open at the end\n"
             "of the pieces before (at most 5) and ``pending`` its bytes when it is shorter than 5, not\n"
             "yet taken. Returns (text, new_runs, run, pending): the run's bytes are taken once it\n"
             "reaches 5, so a run open at the end of a file has no bytes left over.");

/* Bit i: whether p[i] is printable, for the first n (at most 64) bytes; 0 past them. */
static inline uint64_t printable_mask(const unsigned char *p, size_t n) {
    uint64_t m = 0;
#if defined(__SSE2__)
    if (n == 64) { /* as signed chars, printable is 0x1f < c < 0x7f */
        const __m128i above = _mm_set1_epi8(0x1F), below = _mm_set1_epi8(0x7F);
        for (int j = 0; j < 4; j++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * j));
            __m128i ok = _mm_and_si128(_mm_cmpgt_epi8(v, above), _mm_cmplt_epi8(v, below));
            m |= (uint64_t)(uint16_t)_mm_movemask_epi8(ok) << (16 * j);
        }
        return m;
    }
#endif
    for (size_t i = 0; i < n; i++) m |= (uint64_t)printable(p[i]) << i;
    return m;
}

/* Bits of x moved s places towards bit 0, the next word's low bits filling the top (0 < s < 64). */
static inline uint64_t ahead(uint64_t x, uint64_t next, int s) { return (x >> s) | (next << (64 - s)); }

/* Bits of x moved s places towards bit 63, the previous word's top bits filling the bottom. */
static inline uint64_t behind(uint64_t x, uint64_t prev, int s) { return (x << s) | (prev >> (64 - s)); }

/* Bit i: whether the MIN_RUN bytes from byte i of word x (next following it) are all printable. */
static inline uint64_t windows(uint64_t x, uint64_t next) {
    return x & ahead(x, next, 1) & ahead(x, next, 2) & ahead(x, next, 3) & ahead(x, next, 4);
}

static inline int low_zeros(uint64_t x) { /* x != 0 */
#if defined(__GNUC__)
    return __builtin_ctzll(x);
#else
    int k = 0;
    while (!(x & 1)) x >>= 1, k++;
    return k;
#endif
}

static inline int ones(uint64_t x) {
#if defined(__GNUC__)
    return __builtin_popcountll(x);
#else
    int k = 0;
    for (; x; x &= x - 1) k++;
    return k;
#endif
}

static PyObject *printable_runs(PyObject *self, PyObject *args) {
    Py_buffer data;
    const char *pend_in;
    Py_ssize_t run, npend;
    if (!PyArg_ParseTuple(args, "y*ny#", &data, &run, &pend_in, &npend)) return NULL;
    if (run < 0 || run > MIN_RUN || (run < MIN_RUN && npend != run) || (run == MIN_RUN && npend != 0)) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "pending must hold the open run's bytes while it is shorter than 5");
        return NULL;
    }
    size_t n = (size_t)data.len;
    if (n == 0) { /* the state stays as it was */
        PyBuffer_Release(&data);
        return Py_BuildValue("(y#nny#)", "", (Py_ssize_t)0, (Py_ssize_t)0, run, pend_in, npend);
    }
    /* The open run sits before the data as `pre` printable bytes: its pending bytes, or MIN_RUN - 1
     * stand-ins for a run already taken (its next bytes are taken however few they are). */
    size_t pre = run == MIN_RUN ? MIN_RUN - 1 : (size_t)run;
    PyObject *text = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(pre + n));
    if (text == NULL) {
        PyBuffer_Release(&data);
        return NULL;
    }
    const unsigned char *s = data.buf;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(text);
    size_t k = 0, runs = 0, tail = 0;
    Py_BEGIN_ALLOW_THREADS
    /* 64 bytes a word, one bit a byte: P whether it is printable, W whether the MIN_RUN bytes from it
     * all are, C whether some such window covers it (the bytes of the runs). A word's W needs the next
     * word's P, its C the previous word's W. */
    size_t words = (n + 63) / 64;
    uint64_t p = printable_mask(s, n < 64 ? n : 64);
    uint64_t before = pre ? ~0ULL << (64 - pre) : 0; /* the open run, at the top of the word before */
    uint64_t wprev = windows(before, p), cprev = 0;
    if (run == MIN_RUN)
        cprev = 1ULL << 63; /* taken already: its next bytes continue it, they start no run */
    else if (pre && (wprev >> (64 - pre)) & 1) { /* the pending bytes now reach MIN_RUN: take them */
        memcpy(o, pend_in, pre);
        k = pre;
        runs = 1;
        cprev = 1ULL << 63;
    }
    for (size_t w = 0; w < words; w++) {
        size_t at = 64 * w, rest = n - at - (n - at < 64 ? n - at : 64);
        uint64_t next = rest ? printable_mask(s + at + 64, rest < 64 ? rest : 64) : 0;
        uint64_t win = windows(p, next);
        uint64_t c = win | behind(win, wprev, 1) | behind(win, wprev, 2) | behind(win, wprev, 3)
                     | behind(win, wprev, 4);
        runs += (size_t)ones(c & ~behind(c, cprev, 1)); /* a run starts where a taken byte follows none */
        cprev = c;
        wprev = win;
        p = next;
        if (c == ~0ULL) {
            memcpy(o + k, s + at, 64);
            k += 64;
            continue;
        }
        while (c) { /* each stretch of taken bytes in the word */
            int b = low_zeros(c), len = low_zeros(~(c >> b));
            memcpy(o + k, s + at + b, (size_t)len);
            k += (size_t)len;
            c = b + len >= 64 ? 0 : c & (~0ULL << (b + len));
        }
    }
    while (tail < n && tail < MIN_RUN && printable(s[n - 1 - tail])) tail++;
    if (tail == n) tail = tail + pre < MIN_RUN ? tail + pre : MIN_RUN; /* all printable: the run before goes on */
    Py_END_ALLOW_THREADS
    /* a run shorter than MIN_RUN at the end is pending; a longer one was taken */
    PyObject *pending;
    if (tail >= MIN_RUN)
        pending = PyBytes_FromStringAndSize("", 0);
    else if (tail <= n)
        pending = PyBytes_FromStringAndSize((const char *)s + n - tail, (Py_ssize_t)tail);
    else { /* the pending bytes before, and all of these */
        pending = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)tail);
        if (pending != NULL) {
            memcpy(PyBytes_AS_STRING(pending), pend_in, pre);
            memcpy(PyBytes_AS_STRING(pending) + pre, s, n);
        }
    }
    PyBuffer_Release(&data);
    if (pending == NULL) {
        Py_DECREF(text);
        return NULL;
    }
    if (_PyBytes_Resize(&text, (Py_ssize_t)k) < 0) { /* it freed text */
        Py_DECREF(pending);
        return NULL;
    }
    return Py_BuildValue("(NnnN)", text, (Py_ssize_t)runs, (Py_ssize_t)tail, pending);
}

PyDoc_STRVAR(count_patterns_doc,
             "count_patterns(data, skip, patterns)\n--\n\n"
             "How often each of ``patterns`` (a tuple of bytes, each at least 2 long) occurs in ``data``, counting\n"
             "only the matches that end past its first ``skip`` bytes (those were counted with the piece\n"
             "before). A list of ints.");

#define MAX_PATTERNS 64

static PyObject *count_patterns(PyObject *self, PyObject *args) {
    Py_buffer data;
    Py_ssize_t skip;
    PyObject *patterns;
    if (!PyArg_ParseTuple(args, "y*nO!", &data, &skip, &PyTuple_Type, &patterns)) return NULL;
    Py_ssize_t m = PyTuple_GET_SIZE(patterns);
    if (m > MAX_PATTERNS) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "at most 64 patterns");
        return NULL;
    }
    const unsigned char *pat[MAX_PATTERNS];
    Py_ssize_t len[MAX_PATTERNS], count[MAX_PATTERNS] = {0}, longest = 0;
    /* the patterns by first byte: first[c] lists them as a bit mask; pair holds a bit for each pattern's
     * first two bytes, so most positions are passed over on one test */
    uint64_t first[256] = {0}, pair[1024] = {0};
    for (Py_ssize_t j = 0; j < m; j++) {
        PyObject *p = PyTuple_GET_ITEM(patterns, j);
        if (!PyBytes_Check(p) || PyBytes_GET_SIZE(p) < 2) {
            PyBuffer_Release(&data);
            PyErr_SetString(PyExc_TypeError, "patterns must be bytes of at least 2");
            return NULL;
        }
        pat[j] = (const unsigned char *)PyBytes_AS_STRING(p);
        len[j] = PyBytes_GET_SIZE(p);
        longest = len[j] > longest ? len[j] : longest;
        first[pat[j][0]] |= (uint64_t)1 << j;
        unsigned key = pat[j][0] | (unsigned)pat[j][1] << 8;
        pair[key >> 6] |= (uint64_t)1 << (key & 63);
    }
    const unsigned char *s = data.buf;
    Py_ssize_t n = data.len;
    Py_ssize_t start = skip - longest + 1 > 0 ? skip - longest + 1 : 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = start; i + 1 < n; i++) {
        unsigned key = s[i] | (unsigned)s[i + 1] << 8;
        if (!(pair[key >> 6] >> (key & 63) & 1)) continue;
        uint64_t cand = first[s[i]];
        for (Py_ssize_t j = 0; cand; j++, cand >>= 1) {
            Py_ssize_t end = i + len[j];
            if ((cand & 1) && end <= n && end > skip && memcmp(s + i + 1, pat[j] + 1, (size_t)(len[j] - 1)) == 0)
                count[j]++;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyObject *outl = PyList_New(m);
    if (outl == NULL) return NULL;
    for (Py_ssize_t j = 0; j < m; j++) PyList_SET_ITEM(outl, j, PyLong_FromSsize_t(count[j]));
    return outl;
}

PyDoc_STRVAR(wide_runs_doc,
             "wide_runs(data, final)\n--\n\n"
             "The characters of ``data``'s UTF-16LE runs of at least 5 printable ASCII characters (each a\n"
             "printable byte then 0x00), each run followed by a newline, for a stream fed in pieces.\n"
             "Returns (text, keep): the last ``keep`` bytes may start a run the next piece goes on with, so\n"
             "the caller puts them before it; with ``final`` every run is taken. A run of more than\n"
             "MAX_KEEP bytes at a piece's end is taken there (it is split in two).");

#define MAX_KEEP 4096

static inline int wide_char(const unsigned char *s, Py_ssize_t i) { return printable(s[i]) && s[i + 1] == 0; }

static PyObject *wide_runs(PyObject *self, PyObject *args) {
    Py_buffer data;
    int final;
    if (!PyArg_ParseTuple(args, "y*p", &data, &final)) return NULL;
    const unsigned char *s = data.buf;
    Py_ssize_t n = data.len, i = 0, k = 0, keep = 0;
    /* a run of c >= MIN_RUN characters takes 2c bytes and writes c + 1 */
    PyObject *text = PyBytes_FromStringAndSize(NULL, n / 2 + n / (2 * MIN_RUN) + 1);
    if (text == NULL) {
        PyBuffer_Release(&data);
        return NULL;
    }
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(text);
    Py_BEGIN_ALLOW_THREADS
    while (i + 1 < n) {
        if (s[i + 1] != 0 || !printable(s[i])) {
            i++;
            continue;
        }
        Py_ssize_t j = i + 2;
        while (j + 1 < n && wide_char(s, j)) j += 2;
        if (j + 1 >= n && !final && n - i <= MAX_KEEP) { /* it may go on in the next piece */
            keep = n - i;
            break;
        }
        if ((j - i) / 2 >= MIN_RUN) {
            for (Py_ssize_t m = i; m < j; m += 2) o[k++] = s[m];
            o[k++] = '\n';
        }
        i = j; /* the byte that ended it may start a run of the other alignment */
    }
    if (!keep && !final && i == n - 1 && printable(s[i])) keep = 1;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    if (_PyBytes_Resize(&text, k) < 0) return NULL;
    return Py_BuildValue("(Nn)", text, keep);
}

PyDoc_STRVAR(nibble_blocks_doc,
             "nibble_blocks(data, block, out)\n--\n\n"
             "Count the high nibbles (byte >> 4) of each ``block``-byte block of ``data`` (whole blocks\n"
             "only) into ``out``, a writable buffer of (len(data) // block) x 16 int64, block by block.");

static PyObject *nibble_blocks(PyObject *self, PyObject *args) {
    Py_buffer data, out;
    Py_ssize_t block;
    if (!PyArg_ParseTuple(args, "y*nw*", &data, &block, &out)) return NULL;
    if (block < 1 || data.len % block || out.itemsize != (Py_ssize_t)sizeof(int64_t) ||
        out.len != data.len / block * 16 * (Py_ssize_t)sizeof(int64_t)) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "data must be whole blocks and out hold 16 int64 a block");
        return NULL;
    }
    const unsigned char *s = data.buf;
    int64_t *dst = out.buf;
    Py_ssize_t blocks = data.len / block;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t b = 0; b < blocks; b++, s += block, dst += 16) {
        uint32_t t[4][16]; /* four tables, as in histogram */
        memset(t, 0, sizeof t);
        Py_ssize_t i = 0;
        for (; i + 4 <= block; i += 4) {
            t[0][s[i] >> 4]++;
            t[1][s[i + 1] >> 4]++;
            t[2][s[i + 2] >> 4]++;
            t[3][s[i + 3] >> 4]++;
        }
        for (; i < block; i++) t[0][s[i] >> 4]++;
        for (int k = 0; k < 16; k++) dst[k] = (int64_t)t[0][k] + t[1][k] + t[2][k] + t[3][k];
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(nibble_pairs_doc,
             "nibble_pairs(data, pairs, last)\n--\n\n"
             "Add to ``pairs`` (a writable buffer of 256 int64) how often a byte of high nibble a is followed\n"
             "by one of high nibble b, at a * 16 + b, in a stream fed in pieces: ``last`` is the high nibble of\n"
             "the byte before ``data`` (-1: none). Returns the high nibble of its last byte (``last`` if empty).");

static PyObject *nibble_pairs(PyObject *self, PyObject *args) {
    Py_buffer data, out;
    int last;
    if (!PyArg_ParseTuple(args, "y*w*i", &data, &out, &last)) return NULL;
    if (out.len != 256 * (Py_ssize_t)sizeof(int64_t) || out.itemsize != (Py_ssize_t)sizeof(int64_t) ||
        last < -1 || last > 15) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "pairs must hold 256 int64 and last be -1 to 15");
        return NULL;
    }
    const unsigned char *s = data.buf;
    Py_ssize_t n = data.len, i = 1;
    int64_t *dst = out.buf;
    if (n) {
        Py_BEGIN_ALLOW_THREADS
        uint64_t t[4][256];
        memset(t, 0, sizeof t);
        if (last >= 0) t[0][last << 4 | s[0] >> 4]++;
        for (; i + 4 <= n; i += 4) {
            t[0][(s[i - 1] & 0xF0) | s[i] >> 4]++;
            t[1][(s[i] & 0xF0) | s[i + 1] >> 4]++;
            t[2][(s[i + 1] & 0xF0) | s[i + 2] >> 4]++;
            t[3][(s[i + 2] & 0xF0) | s[i + 3] >> 4]++;
        }
        for (; i < n; i++) t[0][(s[i - 1] & 0xF0) | s[i] >> 4]++;
        for (int k = 0; k < 256; k++) dst[k] += (int64_t)(t[0][k] + t[1][k] + t[2][k] + t[3][k]);
        last = s[n - 1] >> 4;
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return PyLong_FromLong(last);
}

static PyMethodDef methods[] = {
    {"histogram", histogram, METH_VARARGS, histogram_doc},
    {"printable_runs", printable_runs, METH_VARARGS, printable_runs_doc},
    {"count_patterns", count_patterns, METH_VARARGS, count_patterns_doc},
    {"wide_runs", wide_runs, METH_VARARGS, wide_runs_doc},
    {"nibble_blocks", nibble_blocks, METH_VARARGS, nibble_blocks_doc},
    {"nibble_pairs", nibble_pairs, METH_VARARGS, nibble_pairs_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bytepass", NULL, -1, methods};

PyMODINIT_FUNC PyInit__bytepass(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "MIN_RUN", MIN_RUN) < 0) Py_CLEAR(m);
    return m;
}

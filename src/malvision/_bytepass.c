/* The passes over every byte of a file, in C: byte histograms, printable-ASCII and UTF-16LE runs, marker counts and words
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

/* Bit i: whether p[i] is 0, for the first n (at most 64) bytes; 0 past them. */
static inline uint64_t zero_mask(const unsigned char *p, size_t n) {
    uint64_t m = 0;
#if defined(__SSE2__)
    if (n == 64) {
        for (int j = 0; j < 4; j++) {
            __m128i ok = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * j)), _mm_setzero_si128());
            m |= (uint64_t)(uint16_t)_mm_movemask_epi8(ok) << (16 * j);
        }
        return m;
    }
#endif
    for (size_t i = 0; i < n; i++) m |= (uint64_t)(p[i] == 0) << i;
    return m;
}

/* Where the last bytes of s[lo:n] may start a UTF-16 string a next piece goes on with: the first byte of
 * the (printable, 0) pairs that end the data, or of those before a last printable byte; n if none. */
static Py_ssize_t open_wide(const unsigned char *s, Py_ssize_t lo, Py_ssize_t n) {
    Py_ssize_t b = n;
    if (n > lo && printable(s[n - 1])) b = n - 1; /* a lone printable byte: the start of a character */
    else if (n - 2 < lo || !wide_char(s, n - 2)) return n;
    while (b - 2 >= lo && wide_char(s, b - 2)) b -= 2;
    return b;
}

static PyObject *wide_runs(PyObject *self, PyObject *args) {
    Py_buffer data;
    int final;
    if (!PyArg_ParseTuple(args, "y*p", &data, &final)) return NULL;
    const unsigned char *s = data.buf;
    Py_ssize_t n = data.len, k = 0, keep = 0, r = 0; /* the bytes before r are done */
    int open = 0;
    /* a run of c >= MIN_RUN characters takes 2c bytes and writes c + 1 */
    PyObject *text = PyBytes_FromStringAndSize(NULL, n / 2 + n / (2 * MIN_RUN) + 1);
    if (text == NULL) {
        PyBuffer_Release(&data);
        return NULL;
    }
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(text);
    Py_BEGIN_ALLOW_THREADS
    /* 64 bytes a word, one bit a byte: W whether a character starts there (printable, then 0), V whether
     * MIN_RUN characters do (W at i, i + 2, ..., i + 8). A string's first V bit is its start; each string
     * is then read to its end, so most words are passed over. */
    size_t first = n < 64 ? (size_t)n : 64;
    uint64_t p = printable_mask(s, first), z = zero_mask(s, first);
    for (Py_ssize_t at = 0; at < n && !open; at += 64) {
        Py_ssize_t rest = n - at - (n - at < 64 ? n - at : 64);
        size_t m = rest < 64 ? (size_t)rest : 64;
        uint64_t pn = rest ? printable_mask(s + at + 64, m) : 0, zn = rest ? zero_mask(s + at + 64, m) : 0;
        uint64_t w = p & ahead(z, zn, 1), wn = pn & (zn >> 1); /* wn: the next word's W below its bit 63 */
        uint64_t v = w & ahead(w, wn, 2) & ahead(w, wn, 4) & ahead(w, wn, 6) & ahead(w, wn, 8);
        p = pn;
        z = zn;
        for (; v; v &= v - 1) {
            Py_ssize_t i = at + low_zeros(v), j;
            if (i < r) continue;
            for (j = i + 2 * MIN_RUN; j + 1 < n && wide_char(s, j); j += 2) {}
            int ends = j >= n || (j == n - 1 && printable(s[j])); /* at the end: the next piece may go on */
            if (ends && !final && n - i <= MAX_KEEP) {
                open = 1;
                break;
            }
            for (Py_ssize_t c = i; c < j; c += 2) o[k++] = s[c];
            o[k++] = '\n';
            r = j;
        }
    }
    if (!final) {
        Py_ssize_t b = open_wide(s, r, n);
        keep = n - b <= MAX_KEEP ? n - b : 0;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    if (_PyBytes_Resize(&text, k) < 0) return NULL;
    return Py_BuildValue("(Nn)", text, keep);
}

PyDoc_STRVAR(letter_words_doc,
             "letter_words(data, final, words=None)\n--\n\n"
             "The words of ``data``: its runs of ASCII letters cut into pieces of at most 24 letters, each piece\n"
             "of 4 or more in lower case and followed by a space (what re.findall(b'[a-z]{4,24}') finds in the\n"
             "lower-cased bytes), for a stream fed in pieces. Returns (text, keep): the last ``keep`` bytes\n"
             "are letters of a run the next piece may go on with, so the caller puts them before it; with\n"
             "``final`` every run is taken. A run of more than MAX_KEEP letters at a piece's end is taken there.\n"
             "With ``words`` (a tuple of lower-case bytes), only the pieces that are one of them are written.");

#define WORD_MIN 4
#define WORD_MAX 24

static inline int letter(unsigned char c) { return (unsigned char)((c | 0x20) - 'a') < 26; }

/* Bit i: whether p[i] is an ASCII letter, for the first n (at most 64) bytes; 0 past them. */
static inline uint64_t letter_mask(const unsigned char *p, size_t n) {
    uint64_t m = 0;
#if defined(__SSE2__)
    if (n == 64) { /* (c | 0x20) - 'a' < 26 unsigned, moved to the signed range */
        const __m128i lower = _mm_set1_epi8(0x20), shift = _mm_set1_epi8((char)(0x80 - 'a')),
                      below = _mm_set1_epi8((char)(0x80 + 26));
        for (int j = 0; j < 4; j++) {
            __m128i v = _mm_or_si128(_mm_loadu_si128((const __m128i *)(p + 16 * j)), lower);
            __m128i ok = _mm_cmplt_epi8(_mm_add_epi8(v, shift), below);
            m |= (uint64_t)(uint16_t)_mm_movemask_epi8(ok) << (16 * j);
        }
        return m;
    }
#endif
    for (size_t i = 0; i < n; i++) m |= (uint64_t)letter(p[i]) << i;
    return m;
}

#define WORD_SLOTS 4096 /* open addressing for at most half as many words */

static inline uint32_t word_hash(const unsigned char *p, Py_ssize_t len) { /* FNV-1a, lower case */
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < len; i++) h = (h ^ (p[i] | 0x20)) * 16777619u;
    return h;
}

typedef struct {
    const char *word[WORD_SLOTS];
    Py_ssize_t len[WORD_SLOTS];
} WordSet;

/* Whether the letters p[0:len] are, in lower case, one of the set's words. */
static int word_in(const WordSet *set, const unsigned char *p, Py_ssize_t len) {
    for (uint32_t h = word_hash(p, len) & (WORD_SLOTS - 1); set->word[h]; h = (h + 1) & (WORD_SLOTS - 1)) {
        if (set->len[h] != len) continue;
        Py_ssize_t i = 0;
        while (i < len && (p[i] | 0x20) == (unsigned char)set->word[h][i]) i++;
        if (i == len) return 1;
    }
    return 0;
}

static PyObject *letter_words(PyObject *self, PyObject *args) {
    Py_buffer data;
    int final;
    PyObject *words = Py_None;
    if (!PyArg_ParseTuple(args, "y*p|O", &data, &final, &words)) return NULL;
    WordSet *set = NULL;
    if (words != Py_None) {
        Py_ssize_t m = PyTuple_Check(words) ? PyTuple_GET_SIZE(words) : -1;
        if (m < 0 || 2 * m > WORD_SLOTS) {
            PyBuffer_Release(&data);
            PyErr_SetString(PyExc_ValueError, "words must be a tuple of at most 2048 lower-case bytes");
            return NULL;
        }
        set = PyMem_Calloc(1, sizeof(WordSet));
        if (set == NULL) {
            PyBuffer_Release(&data);
            return PyErr_NoMemory();
        }
        for (Py_ssize_t j = 0; j < m; j++) {
            PyObject *w = PyTuple_GET_ITEM(words, j);
            if (!PyBytes_Check(w)) {
                PyMem_Free(set);
                PyBuffer_Release(&data);
                PyErr_SetString(PyExc_TypeError, "words must be bytes");
                return NULL;
            }
            const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(w);
            Py_ssize_t len = PyBytes_GET_SIZE(w);
            uint32_t h = word_hash(p, len) & (WORD_SLOTS - 1);
            while (set->word[h]) h = (h + 1) & (WORD_SLOTS - 1);
            set->word[h] = (const char *)p; /* the tuple holds them for the call */
            set->len[h] = len;
        }
    }
    const unsigned char *s = data.buf;
    Py_ssize_t n = data.len, k = 0, keep = 0, r = 0; /* the bytes before r are done */
    /* a word of w >= WORD_MIN letters writes w + 1 bytes */
    PyObject *text = PyBytes_FromStringAndSize(NULL, n + n / WORD_MIN + 1);
    if (text == NULL) {
        PyMem_Free(set);
        PyBuffer_Release(&data);
        return NULL;
    }
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(text);
    Py_BEGIN_ALLOW_THREADS
    /* 64 bytes a word, one bit a byte: W whether the WORD_MIN bytes from it are all letters. A run's first
     * W bit is its start; each run is then read to its end byte by byte, so most words are passed over. */
    uint64_t p = letter_mask(s, n < 64 ? (size_t)n : 64);
    for (Py_ssize_t at = 0; at < n && !keep; at += 64) {
        Py_ssize_t rest = n - at - (n - at < 64 ? n - at : 64);
        uint64_t next = rest ? letter_mask(s + at + 64, rest < 64 ? (size_t)rest : 64) : 0;
        uint64_t win = p & ahead(p, next, 1) & ahead(p, next, 2) & ahead(p, next, 3);
        p = next;
        while (win) {
            Py_ssize_t i = at + low_zeros(win);
            if (i >= r) {
                Py_ssize_t j = i + WORD_MIN;
                while (j < n && letter(s[j])) j++;
                if (j == n && !final && n - i <= MAX_KEEP) { /* it may go on in the next piece */
                    keep = n - i;
                    break;
                }
                for (Py_ssize_t q = i; q < j; q += WORD_MAX) { /* pieces of WORD_MAX, as the regex cuts */
                    Py_ssize_t len = j - q < WORD_MAX ? j - q : WORD_MAX;
                    if (len < WORD_MIN) break;
                    if (set != NULL && !word_in(set, s + q, len)) continue;
                    for (Py_ssize_t m = q; m < q + len; m++) o[k++] = s[m] | 0x20;
                    o[k++] = ' ';
                }
                r = j;
            }
            win &= win - 1;
        }
    }
    if (!final && !keep) { /* fewer than WORD_MIN letters at the end may begin a word */
        Py_ssize_t t = 0;
        while (t < n && t < WORD_MIN && letter(s[n - 1 - t])) t++;
        if (t && n - t >= r) keep = t;
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(set);
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
    {"letter_words", letter_words, METH_VARARGS, letter_words_doc},
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

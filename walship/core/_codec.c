/* walship.core._codec: the per-frame loops of walship.core.frame in C (optional).
 *
 * The pure-Python code of walship/core/frame.py is the reference: every function here does
 * exactly what its Python counterpart does (tests/core/test_codec_native.py compares both on random
 * and damaged inputs). The checks that raise (payload types and sizes, the u64 ranges) stay in
 * Python and run before these are called; what is checked here again only keeps the C safe.
 *
 * Frame (big-endian): u32 length, u64 commit_seq, u64 timestamp_micros, u8 payload_type,
 * payload, u32 CRC-32C of everything before it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#define HEAD_SIZE 21
#define CRC_SIZE 4
#define LENGTH_SIZE 4
#define FRAME_OVERHEAD (HEAD_SIZE + CRC_SIZE)
#define MIN_FRAME_LENGTH (FRAME_OVERHEAD - LENGTH_SIZE)
#define MAX_FRAME_LENGTH (64u * 1024u * 1024u)
/* Below this many bytes a loop keeps the GIL: releasing it costs more than it frees. */
#define NOGIL_MIN_BYTES (256 * 1024)
/* The most payload bytes one decode call copies (beyond the first frame). */
#define DECODE_CHUNK_BYTES (256 * 1024)

/* --- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and final xor ~0) ---------- */

#define POLY 0x82f63b78u

static uint32_t sw_table[8][256];

static void
sw_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        sw_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = sw_table[0][n];
        for (int k = 1; k < 8; k++) {
            c = sw_table[0][c & 0xff] ^ (c >> 8);
            sw_table[k][n] = c;
        }
    }
}

/* Slice-by-8, byte order independent (the words are assembled byte by byte). */
static uint32_t
crc32c_sw(uint32_t crc, const unsigned char *p, size_t len)
{
    crc = ~crc;
    while (len >= 8) {
        crc ^= (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        crc = sw_table[7][crc & 0xff] ^ sw_table[6][(crc >> 8) & 0xff] ^
              sw_table[5][(crc >> 16) & 0xff] ^ sw_table[4][crc >> 24] ^ sw_table[3][p[4]] ^
              sw_table[2][p[5]] ^ sw_table[1][p[6]] ^ sw_table[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = sw_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SSE42_PATH 1
#include <nmmintrin.h>

/* Three interleaved streams hide the instruction's latency; the streams are joined by
 * multiplying a CRC by x^(8*block) (the "zeros" operators, M. Adler's method). */
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256

static uint32_t zeros_long[4][256];
static uint32_t zeros_short[4][256];

static uint32_t
gf2_times(const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1)
            sum ^= *mat;
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void
gf2_square(uint32_t *square, const uint32_t *mat)
{
    for (int n = 0; n < 32; n++)
        square[n] = gf2_times(mat, mat[n]);
}

/* The operator that appends len zero bytes (len a power of two) to a raw CRC register. */
static void
zeros_op(uint32_t *even, size_t len)
{
    uint32_t odd[32];
    uint32_t row = 1;
    odd[0] = POLY;
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    gf2_square(even, odd); /* two zero bits */
    gf2_square(odd, even); /* four */
    do {
        gf2_square(even, odd); /* one zero byte, then four, ... */
        len >>= 1;
        if (len == 0)
            return;
        gf2_square(odd, even);
        len >>= 1;
    } while (len);
    memcpy(even, odd, sizeof(odd));
}

static void
zeros_init(uint32_t zeros[4][256], size_t len)
{
    uint32_t op[32];
    zeros_op(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        zeros[0][n] = gf2_times(op, n);
        zeros[1][n] = gf2_times(op, n << 8);
        zeros[2][n] = gf2_times(op, n << 16);
        zeros[3][n] = gf2_times(op, n << 24);
    }
}

static inline uint32_t
zeros_shift(uint32_t zeros[4][256], uint32_t crc)
{
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^
           zeros[3][crc >> 24];
}

static inline uint64_t
load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t crc, const unsigned char *p, size_t len)
{
    uint64_t c0 = (uint32_t)~crc;
    while (len && ((uintptr_t)p & 7)) {
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
        len--;
    }
    while (len >= 3 * LONG_BLOCK) {
        uint64_t c1 = 0, c2 = 0;
        const unsigned char *end = p + LONG_BLOCK;
        do {
            c0 = _mm_crc32_u64(c0, load64(p));
            c1 = _mm_crc32_u64(c1, load64(p + LONG_BLOCK));
            c2 = _mm_crc32_u64(c2, load64(p + 2 * LONG_BLOCK));
            p += 8;
        } while (p < end);
        c0 = zeros_shift(zeros_long, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = zeros_shift(zeros_long, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * LONG_BLOCK;
        len -= 3 * LONG_BLOCK;
    }
    while (len >= 3 * SHORT_BLOCK) {
        uint64_t c1 = 0, c2 = 0;
        const unsigned char *end = p + SHORT_BLOCK;
        do {
            c0 = _mm_crc32_u64(c0, load64(p));
            c1 = _mm_crc32_u64(c1, load64(p + SHORT_BLOCK));
            c2 = _mm_crc32_u64(c2, load64(p + 2 * SHORT_BLOCK));
            p += 8;
        } while (p < end);
        c0 = zeros_shift(zeros_short, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = zeros_shift(zeros_short, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * SHORT_BLOCK;
        len -= 3 * SHORT_BLOCK;
    }
    while (len >= 8) {
        c0 = _mm_crc32_u64(c0, load64(p));
        p += 8;
        len -= 8;
    }
    while (len--)
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
    return ~(uint32_t)c0;
}

/* The CRC-32C of three buffers of len bytes each, at p, p + stride and p + 2 * stride, as
 * three independent chains: a short frame is one chain too short for crc32c_hw to split, and
 * a chain waits on its previous step (three cycles an instruction), so three frames at once
 * take about as long as one. */
__attribute__((target("sse4.2"))) static void
crc32c_hw3(const unsigned char *p, size_t stride, size_t len, uint32_t out[3])
{
    const unsigned char *a = p, *b = p + stride, *c = p + 2 * stride;
    uint64_t ca = 0xffffffffu, cb = 0xffffffffu, cc = 0xffffffffu;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        ca = _mm_crc32_u64(ca, load64(a + i));
        cb = _mm_crc32_u64(cb, load64(b + i));
        cc = _mm_crc32_u64(cc, load64(c + i));
    }
    for (; i < len; i++) {
        ca = _mm_crc32_u8((uint32_t)ca, a[i]);
        cb = _mm_crc32_u8((uint32_t)cb, b[i]);
        cc = _mm_crc32_u8((uint32_t)cc, c[i]);
    }
    out[0] = ~(uint32_t)ca;
    out[1] = ~(uint32_t)cb;
    out[2] = ~(uint32_t)cc;
}
#endif

static int use_hw = 0;

static inline uint32_t
crc32c(uint32_t crc, const unsigned char *p, size_t len)
{
#ifdef HAVE_SSE42_PATH
    if (use_hw)
        return crc32c_hw(crc, p, len);
#endif
    return crc32c_sw(crc, p, len);
}

/* Below this many bytes a frame's CRC is one chain in crc32c_hw: crc32c_3 runs three frames
 * of such a size side by side. */
#define CRC3_MAX_BYTES (3 * SHORT_BLOCK)

/* crc32c(0, ...) of the three buffers of crc32c_hw3, by whichever path crc32c takes. */
static inline void
crc32c_3(const unsigned char *p, size_t stride, size_t len, uint32_t out[3])
{
#ifdef HAVE_SSE42_PATH
    if (use_hw) {
        crc32c_hw3(p, stride, len, out);
        return;
    }
#endif
    for (int k = 0; k < 3; k++)
        out[k] = crc32c_sw(0, p + (size_t)k * stride, len);
}

/* --- big-endian fields ----------------------------------------------------------------------- */

static inline uint32_t
get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t
get64(const unsigned char *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static inline void
put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline void
put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

/* --- crc32c(data, value=0) ------------------------------------------------------------------- */

static PyObject *
crc_common(PyObject *args, int force_sw)
{
    Py_buffer view;
    unsigned long value = 0;
    uint32_t crc;
    if (!PyArg_ParseTuple(args, "y*|k", &view, &value))
        return NULL;
    if (view.len >= NOGIL_MIN_BYTES) {
        Py_BEGIN_ALLOW_THREADS;
        crc = force_sw ? crc32c_sw((uint32_t)value, view.buf, (size_t)view.len)
                       : crc32c((uint32_t)value, view.buf, (size_t)view.len);
        Py_END_ALLOW_THREADS;
    }
    else {
        crc = force_sw ? crc32c_sw((uint32_t)value, view.buf, (size_t)view.len)
                       : crc32c((uint32_t)value, view.buf, (size_t)view.len);
    }
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(crc);
}

static PyObject *
py_crc32c(PyObject *self, PyObject *args)
{
    return crc_common(args, 0);
}

static PyObject *
py_crc32c_sw(PyObject *self, PyObject *args)
{
    return crc_common(args, 1);
}

/* --- the encoder ----------------------------------------------------------------------------- */

typedef struct {
    const unsigned char *ptr;
    Py_ssize_t len;
    PyObject *held; /* a bytes object (a reference) when view.obj is NULL */
    Py_buffer view;
} Piece;

static void
release_pieces(Piece *pieces, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pieces[i].held)
            Py_DECREF(pieces[i].held);
        else
            PyBuffer_Release(&pieces[i].view);
    }
    PyMem_Free(pieces);
}

/* Gathering: only the heads and CRCs go into buf (25 bytes a frame: head 0, then CRC i and
 * head i+1 side by side, then the last CRC); pieces gets views of them around the payload
 * objects themselves, in file order: 2n+1 buffers for one gathering write. */
static int
add_pieces(PyObject *pieces, PyObject *bufobj, Py_ssize_t offset, PyObject *seq_obj, Py_ssize_t n)
{
    PyObject *master = PyMemoryView_FromObject(bufobj);
    int rc = -1;
    if (!master)
        return -1;
    for (Py_ssize_t i = 0; i <= n; i++) {
        Py_ssize_t start = i == 0 ? offset : offset + HEAD_SIZE + (i - 1) * FRAME_OVERHEAD;
        Py_ssize_t len = i == 0 ? HEAD_SIZE : i == n ? CRC_SIZE : FRAME_OVERHEAD;
        PyObject *lo = PyLong_FromSsize_t(start), *hi = PyLong_FromSsize_t(start + len);
        PyObject *sl = lo && hi ? PySlice_New(lo, hi, NULL) : NULL;
        PyObject *view = sl ? PyObject_GetItem(master, sl) : NULL;
        Py_XDECREF(lo);
        Py_XDECREF(hi);
        Py_XDECREF(sl);
        if (!view || PyList_Append(pieces, view) < 0) {
            Py_XDECREF(view);
            goto done;
        }
        Py_DECREF(view);
        if (i < n && PyList_Append(pieces, PySequence_Fast_GET_ITEM(seq_obj, i)) < 0)
            goto done;
    }
    rc = 0;
done:
    Py_DECREF(master);
    return rc;
}

/* memcpy for a short payload: 16-byte moves, the last one overlapping (GCC makes a memcpy of
 * unknown size in this loop a rep movsq, whose start-up cost was half of the loop's time). */
static inline void
copy_short(unsigned char *d, const unsigned char *s, size_t n)
{
    if (n >= 16) {
        for (size_t i = 0; i + 16 < n; i += 16)
            memcpy(d + i, s + i, 16);
        memcpy(d + n - 16, s + n - 16, 16);
    }
    else if (n >= 8) {
        memcpy(d, s, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    }
    else {
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
    }
}

static inline void
put_head(unsigned char *p, Py_ssize_t len, unsigned long long seq, unsigned long long ts,
         int ptype)
{
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* (byte-swapped registers stored whole: GCC merged put64's bytes into one 16-byte store
     * through the stack, whose load stalled on the two 8-byte stores before it) */
    uint32_t length = __builtin_bswap32((uint32_t)(MIN_FRAME_LENGTH + len));
    uint64_t seq_be = __builtin_bswap64(seq), ts_be = __builtin_bswap64(ts);
    memcpy(p, &length, 4);
    memcpy(p + 4, &seq_be, 8);
    memcpy(p + 12, &ts_be, 8);
#else
    put32(p, (uint32_t)(MIN_FRAME_LENGTH + len));
    put64(p + 4, seq);
    put64(p + 12, ts);
#endif
    p[20] = (unsigned char)ptype;
}

/* The frames of n payloads, from pieces or (pieces NULL) from items, exact bytes objects,
 * into p: whole (copy) or heads and CRCs only (gathering). Returns the end. Runs no Python
 * code (the caller may have given the GIL up when pieces hold the payloads). */
static unsigned char *
encode_frames(unsigned char *p, const Piece *pieces, PyObject *const *items, Py_ssize_t n,
              unsigned long long first_seq, unsigned long long ts, int ptype, int copy)
{
#define SRC(i) (pieces ? pieces[i].ptr : (const unsigned char *)PyBytes_AS_STRING(items[i]))
#define LEN(i) (pieces ? pieces[i].len : PyBytes_GET_SIZE(items[i]))
    Py_ssize_t i = 0;
    while (i < n) {
        Py_ssize_t len = LEN(i);
        if (copy && i + 2 < n && len == LEN(i + 1) && len == LEN(i + 2) &&
            HEAD_SIZE + len < CRC3_MAX_BYTES) {
            /* three short frames of one size (a batch of like records): their CRCs at once */
            size_t stride = (size_t)(FRAME_OVERHEAD + len);
            uint32_t crc[3];
            for (int k = 0; k < 3; k++) {
                unsigned char *f = p + (size_t)k * stride;
                put_head(f, len, first_seq + (unsigned long long)(i + k), ts, ptype);
                copy_short(f + HEAD_SIZE, SRC(i + k), (size_t)len);
            }
            crc32c_3(p, stride, (size_t)(HEAD_SIZE + len), crc);
            for (int k = 0; k < 3; k++)
                put32(p + (size_t)k * stride + HEAD_SIZE + len, crc[k]);
            p += 3 * stride;
            i += 3;
            continue;
        }
        const unsigned char *src = SRC(i);
        put_head(p, len, first_seq + (unsigned long long)i, ts, ptype);
        if (copy) {
            if (len)
                memcpy(p + HEAD_SIZE, src, (size_t)len);
            put32(p + HEAD_SIZE + len, crc32c(0, p, (size_t)(HEAD_SIZE + len)));
            p += HEAD_SIZE + len + CRC_SIZE;
        }
        else {
            put32(p + HEAD_SIZE, crc32c(crc32c(0, p, HEAD_SIZE), src, (size_t)len));
            p += FRAME_OVERHEAD;
        }
        i++;
    }
    return p;
#undef SRC
#undef LEN
}

/* Whether every one of the n items is an exact bytes object no longer than a frame holds;
 * then *need and *work are the bytes of buf the frames take and the bytes they cover. */
static int
all_bytes(PyObject *const *items, Py_ssize_t n, int copy, Py_ssize_t *need, Py_ssize_t *work)
{
    Py_ssize_t payload = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_CheckExact(items[i]))
            return 0;
        Py_ssize_t len = PyBytes_GET_SIZE(items[i]);
        if ((size_t)len > MAX_FRAME_LENGTH - MIN_FRAME_LENGTH)
            return 0; /* the buffer path raises for it */
        payload += len; /* no overflow: n * 64 MiB fits a Py_ssize_t for any list in memory */
    }
    *need = (copy ? payload : 0) + FRAME_OVERHEAD * n;
    *work = payload + FRAME_OVERHEAD * n;
    return 1;
}

/* measure(items) -> int | None: the total length of items, a list or tuple (exactly), when
 * every one is an exact bytes object; else None (frame.measure_payloads' Python path then
 * checks and converts them). One pass, no Python call per item. */
static PyObject *
py_measure(PyObject *self, PyObject *items)
{
    if (!PyList_CheckExact(items) && !PyTuple_CheckExact(items))
        Py_RETURN_NONE;
    PyObject *const *it = PySequence_Fast_ITEMS(items);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    size_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyBytes_CheckExact(it[i]))
            Py_RETURN_NONE;
        total += (size_t)PyBytes_GET_SIZE(it[i]);
        if (total > (size_t)PY_SSIZE_T_MAX) /* (repeats of one huge object) */
            Py_RETURN_NONE;
    }
    return PyLong_FromSize_t(total);
}

/* encode_batch_at(buf, offset, first_seq, timestamp_micros, payload_type, items, pieces=None)
 * -> int. items: a list or tuple of bytes-like objects, already checked by
 * frame.encode_batch_at; pieces: None (frames copied whole into buf) or a list (gathering). */
static PyObject *
py_encode_batch_at(PyObject *self, PyObject *args)
{
    Py_buffer out;
    Py_ssize_t offset;
    unsigned long long first_seq, ts;
    int ptype;
    PyObject *items, *seq_obj = NULL, *result = NULL, *gather = Py_None;
    Piece *pieces = NULL;
    Py_ssize_t n, got = 0, need = 0, work = 0;
    int copy, direct;

    if (!PyArg_ParseTuple(args, "w*nKKiO|O", &out, &offset, &first_seq, &ts, &ptype, &items,
                          &gather))
        return NULL;
    if (gather != Py_None && !PyList_CheckExact(gather)) {
        PyErr_SetString(PyExc_TypeError, "pieces must be a list or None");
        goto done;
    }
    seq_obj = PySequence_Fast(items, "payloads must be a list or tuple");
    if (!seq_obj)
        goto done;
    n = PySequence_Fast_GET_SIZE(seq_obj);
    if (ptype < 0 || ptype > 255 || offset < 0) {
        PyErr_SetString(PyExc_ValueError, "payload_type or offset out of range");
        goto done;
    }
    copy = gather == Py_None;
    /* Exact bytes and too little work to give the GIL up: the loop reads the bytes objects
     * themselves (the GIL is held and it runs no Python code, so seq_obj cannot change under
     * it), without a buffer export each. */
    direct = all_bytes(PySequence_Fast_ITEMS(seq_obj), n, copy, &need, &work) &&
             work < NOGIL_MIN_BYTES;
    if (!direct) {
        need = work = 0;
        pieces = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Piece));
        if (!pieces) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (got = 0; !direct && got < n; got++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq_obj, got);
        Piece *pc = &pieces[got];
        if (PyBytes_CheckExact(item)) {
            Py_INCREF(item);
            pc->held = item;
            pc->ptr = (const unsigned char *)PyBytes_AS_STRING(item);
            pc->len = PyBytes_GET_SIZE(item);
        }
        else {
            if (PyObject_GetBuffer(item, &pc->view, PyBUF_C_CONTIGUOUS) < 0)
                goto done;
            pc->ptr = pc->view.buf;
            pc->len = pc->view.len;
        }
        if ((size_t)pc->len > MAX_FRAME_LENGTH - MIN_FRAME_LENGTH) {
            got++;
            PyErr_SetString(PyExc_ValueError, "payload too large");
            goto done;
        }
        need += (copy ? pc->len : 0) + FRAME_OVERHEAD;
        work += pc->len + FRAME_OVERHEAD;
    }
    if (offset > out.len || need > out.len - offset) {
        PyErr_Format(PyExc_ValueError, "buffer of %zd bytes is too short for %zd at %zd", out.len,
                     need, offset);
        goto done;
    }
    {
        unsigned char *base = (unsigned char *)out.buf + offset;
        unsigned char *p;
        int nogil = !direct && work >= NOGIL_MIN_BYTES;
        PyThreadState *ts_state = nogil ? PyEval_SaveThread() : NULL;
        p = encode_frames(base, pieces, PySequence_Fast_ITEMS(seq_obj), n, first_seq, ts, ptype,
                          copy);
        if (nogil)
            PyEval_RestoreThread(ts_state);
        if (!copy && n && add_pieces(gather, out.obj, offset, seq_obj, n) < 0)
            goto done;
        result = PyLong_FromSsize_t(offset + (Py_ssize_t)(p - base));
    }
done:
    if (pieces)
        release_pieces(pieces, got);
    Py_XDECREF(seq_obj);
    PyBuffer_Release(&out);
    return result;
}

/* --- the scanner ----------------------------------------------------------------------------- */

/* Walk valid frames from *off, at most max of them (and none that starts max_bytes or more
 * after *off), recording each one's start in starts[];
 * return how many; *off ends where the walk stopped (just after the last valid frame). The
 * conditions are FrameScan's: a whole head, a length in range, the frame within the data,
 * its CRC. */
static Py_ssize_t
walk(const unsigned char *data, Py_ssize_t size, Py_ssize_t *off, Py_ssize_t max,
     Py_ssize_t max_bytes, Py_ssize_t *starts)
{
    Py_ssize_t o = *off, count = 0;
    Py_ssize_t limit = max_bytes >= size - o ? size : o + max_bytes;
    while (count < max && o < limit && size - o >= HEAD_SIZE) {
        uint32_t flen = get32(data + o);
        if (flen < MIN_FRAME_LENGTH || flen > MAX_FRAME_LENGTH ||
            (Py_ssize_t)flen > size - o - LENGTH_SIZE)
            break;
        Py_ssize_t body = o + LENGTH_SIZE + (Py_ssize_t)flen - CRC_SIZE;
        if (crc32c(0, data + o, (size_t)(body - o)) != get32(data + body))
            break;
        starts[count++] = o;
        o = body + CRC_SIZE;
    }
    *off = o;
    return count;
}

/* A tuple subclass without extra fields (a NamedTuple) can be filled like a tuple (up to 3.13:
 * 3.14's tuples cache their hash in a field that only CPython's own constructors reset). */
static int
is_plain_tuple_type(PyObject *cls)
{
    PyTypeObject *t = (PyTypeObject *)cls;
    return PY_VERSION_HEX < 0x030E0000 && PyType_Check(cls) && PyType_IsSubtype(t, &PyTuple_Type) &&
           t->tp_basicsize == PyTuple_Type.tp_basicsize &&
           t->tp_itemsize == PyTuple_Type.tp_itemsize && t->tp_dictoffset == 0;
}

/* scan_common: kind 0 (scan): (off, end, seq, ts, type) tuples; kind 1 (decode): frame_cls
 * instances (seq, ts, type, payload bytes). Returns (list, stop_offset). */
static PyObject *
scan_common(PyObject *args, int decode)
{
    Py_buffer view;
    Py_ssize_t off, max, count;
    PyObject *frame_cls = NULL, *list = NULL, *result = NULL;
    Py_ssize_t *starts = NULL;
    int fill;
    /* decode copies the payloads: a bounded chunk keeps them in the cache and reuses freed
     * memory, instead of allocating a whole segment's worth of new pages per call */
    Py_ssize_t max_bytes = decode ? DECODE_CHUNK_BYTES : PY_SSIZE_T_MAX;

    if (decode) {
        if (!PyArg_ParseTuple(args, "y*nnO", &view, &off, &max, &frame_cls))
            return NULL;
    }
    else if (!PyArg_ParseTuple(args, "y*nn", &view, &off, &max))
        return NULL;
    if (off < 0 || max < 1) {
        PyErr_SetString(PyExc_ValueError, "offset must be >= 0 and max_frames >= 1");
        goto done;
    }
    fill = decode && is_plain_tuple_type(frame_cls);
    if (off < view.len && max > (view.len - off) / FRAME_OVERHEAD + 1)
        max = (view.len - off) / FRAME_OVERHEAD + 1;
    if (off >= view.len)
        max = 1;
    starts = PyMem_Malloc((size_t)max * sizeof(Py_ssize_t));
    if (!starts) {
        PyErr_NoMemory();
        goto done;
    }
    {
        const unsigned char *data = view.buf;
        if (view.len - off >= NOGIL_MIN_BYTES) {
            Py_BEGIN_ALLOW_THREADS;
            count = walk(data, view.len, &off, max, max_bytes, starts);
            Py_END_ALLOW_THREADS;
        }
        else
            count = walk(data, view.len, &off, max, max_bytes, starts);
        list = PyList_New(count);
        if (!list)
            goto done;
        for (Py_ssize_t i = 0; i < count; i++) {
            const unsigned char *p = data + starts[i];
            Py_ssize_t end = starts[i] + LENGTH_SIZE + (Py_ssize_t)get32(p);
            PyObject *item;
            if (!decode) {
                PyObject *f[5];
                f[0] = PyLong_FromSsize_t(starts[i]);
                f[1] = PyLong_FromSsize_t(end);
                f[2] = PyLong_FromUnsignedLongLong(get64(p + 4));
                f[3] = PyLong_FromUnsignedLongLong(get64(p + 12));
                f[4] = PyLong_FromLong(p[20]);
                item = PyTuple_New(5);
                if (!item || !f[0] || !f[1] || !f[2] || !f[3] || !f[4]) {
                    Py_XDECREF(item);
                    for (int k = 0; k < 5; k++)
                        Py_XDECREF(f[k]);
                    goto done;
                }
                for (int k = 0; k < 5; k++)
                    PyTuple_SET_ITEM(item, k, f[k]);
            }
            else {
                PyObject *f[4];
                f[0] = PyLong_FromUnsignedLongLong(get64(p + 4));
                f[1] = PyLong_FromUnsignedLongLong(get64(p + 12));
                f[2] = PyLong_FromLong(p[20]);
                f[3] = PyBytes_FromStringAndSize((const char *)p + HEAD_SIZE,
                                                 end - CRC_SIZE - starts[i] - HEAD_SIZE);
                if (!f[0] || !f[1] || !f[2] || !f[3]) {
                    for (int k = 0; k < 4; k++)
                        Py_XDECREF(f[k]);
                    goto done;
                }
                if (fill) {
                    /* what tuple.__new__(cls, ...) does for a subclass without fields */
                    item = ((PyTypeObject *)frame_cls)->tp_alloc((PyTypeObject *)frame_cls, 4);
                    if (item) {
                        for (int k = 0; k < 4; k++)
                            PyTuple_SET_ITEM(item, k, f[k]);
                        if (PyObject_GC_IsTracked(item)) /* ints and bytes: in no cycle */
                            PyObject_GC_UnTrack(item);
                    }
                    else {
                        for (int k = 0; k < 4; k++)
                            Py_DECREF(f[k]);
                    }
                }
                else {
                    item = PyObject_CallFunctionObjArgs(frame_cls, f[0], f[1], f[2], f[3], NULL);
                    for (int k = 0; k < 4; k++)
                        Py_DECREF(f[k]);
                }
            }
            if (!item)
                goto done;
            PyList_SET_ITEM(list, i, item);
        }
        result = Py_BuildValue("(On)", list, off);
    }
done:
    Py_XDECREF(list);
    PyMem_Free(starts);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *
py_scan(PyObject *self, PyObject *args)
{
    return scan_common(args, 0);
}

static PyObject *
py_decode(PyObject *self, PyObject *args)
{
    return scan_common(args, 1);
}


/* --- summarize: the open's scan of a segment, without a Python object per frame ------------- */

/* summarize(data, offset, prev_seq) -> (count, first_seq, first_ts, last_seq, last_ts, end,
 * regressed). Walks valid frames from offset as FrameScan does, and also stops before the first
 * frame whose commit_seq is not above the frame before it (the first one: above prev_seq,
 * unless prev_seq is None): regressed is then 1 and end that frame's offset; else end is where
 * the valid frames end. The first_* and last_* fields are 0 when count is 0. */
static PyObject *
py_summarize(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t off, count = 0;
    PyObject *prev_obj;
    unsigned long long prev = 0, first_seq = 0, first_ts = 0, last_ts = 0;
    int have_prev, regressed = 0;
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "y*nO", &view, &off, &prev_obj))
        return NULL;
    have_prev = prev_obj != Py_None;
    if (have_prev) {
        prev = PyLong_AsUnsignedLongLong(prev_obj);
        if (prev == (unsigned long long)-1 && PyErr_Occurred())
            goto done;
    }
    if (off < 0) {
        PyErr_SetString(PyExc_ValueError, "offset must be >= 0");
        goto done;
    }
    {
        const unsigned char *data = view.buf;
        Py_ssize_t size = view.len, o = off;
        PyThreadState *st = size - off >= NOGIL_MIN_BYTES ? PyEval_SaveThread() : NULL;
        while (size - o >= HEAD_SIZE) {
            uint32_t flen = get32(data + o);
            if (flen < MIN_FRAME_LENGTH || flen > MAX_FRAME_LENGTH ||
                (Py_ssize_t)flen > size - o - LENGTH_SIZE)
                break;
            Py_ssize_t body = o + LENGTH_SIZE + (Py_ssize_t)flen - CRC_SIZE;
            if (crc32c(0, data + o, (size_t)(body - o)) != get32(data + body))
                break;
            unsigned long long seq = get64(data + o + 4);
            if (have_prev && seq <= prev) {
                regressed = 1;
                break;
            }
            if (count == 0) {
                first_seq = seq;
                first_ts = get64(data + o + 12);
            }
            last_ts = get64(data + o + 12);
            prev = seq;
            have_prev = 1;
            count++;
            o = body + CRC_SIZE;
        }
        if (st)
            PyEval_RestoreThread(st);
        result = Py_BuildValue("(nKKKKni)", count, first_seq, first_ts, count ? prev : 0ULL,
                               last_ts, o, regressed);
    }
done:
    PyBuffer_Release(&view);
    return result;
}

/* --- decode_range: the read path ------------------------------------------------------------ */

/* Walk valid frames from *off as walk() does, skipping (not recording) frames whose commit_seq
 * is below lo and stopping after the first one at or above hi (before it when it is above
 * hi), with *done = 1. A frame that ends at or
 * before trusted_end was verified already (the open's scan): its CRC is not computed again;
 * its length is still checked, so that nothing is ever read outside the data. */
static Py_ssize_t
walk_range(const unsigned char *data, Py_ssize_t size, Py_ssize_t *off, Py_ssize_t max,
           Py_ssize_t max_bytes, Py_ssize_t *starts, unsigned long long lo,
           unsigned long long hi, Py_ssize_t trusted_end, int *done)
{
    Py_ssize_t o = *off, count = 0;
    Py_ssize_t limit = max_bytes >= size - o ? size : o + max_bytes;
    while (count < max && o < limit && size - o >= HEAD_SIZE) {
        uint32_t flen = get32(data + o);
        if (flen < MIN_FRAME_LENGTH || flen > MAX_FRAME_LENGTH ||
            (Py_ssize_t)flen > size - o - LENGTH_SIZE)
            break;
        Py_ssize_t body = o + LENGTH_SIZE + (Py_ssize_t)flen - CRC_SIZE;
        if (body + CRC_SIZE > trusted_end &&
            crc32c(0, data + o, (size_t)(body - o)) != get32(data + body))
            break;
        unsigned long long seq = get64(data + o + 4);
        if (seq > hi) {
            *done = 1;
            break;
        }
        if (seq >= lo)
            starts[count++] = o;
        o = body + CRC_SIZE;
        if (seq >= hi) { /* nothing after it is wanted: never look at the next frame */
            *done = 1;
            break;
        }
    }
    *off = o;
    return count;
}

static PyObject *
slice_of(PyObject *base, Py_ssize_t start, Py_ssize_t stop)
{
    PyObject *a = PyLong_FromSsize_t(start), *b = PyLong_FromSsize_t(stop), *item = NULL;
    PyObject *sl = a && b ? PySlice_New(a, b, NULL) : NULL;
    if (sl)
        item = PyObject_GetItem(base, sl);
    Py_XDECREF(a);
    Py_XDECREF(b);
    Py_XDECREF(sl);
    return item;
}

/* decode_range(data, offset, max_frames, frame_cls, lo, hi, trusted_end, base)
 * -> (list of frame_cls(seq, ts, type, payload), stop_offset, done).
 * base None: payloads are bytes (copied, at most DECODE_CHUNK_BYTES of them beyond the first
 * frame per call); else base is a memoryview of data and payloads are slices of it (no copy).
 * done: the walk reached hi (and stopped after the frame at it, or before one above it). Frames that share a timestamp share its int. */
static PyObject *
py_decode_range(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t off, max, count, trusted_end;
    unsigned long long lo, hi;
    PyObject *frame_cls, *base, *list = NULL, *result = NULL, *ts_obj = NULL;
    unsigned long long last_ts = 0;
    Py_ssize_t *starts = NULL;
    int fill, done = 0;

    if (!PyArg_ParseTuple(args, "y*nnOKKnO", &view, &off, &max, &frame_cls, &lo, &hi,
                          &trusted_end, &base))
        return NULL;
    if (off < 0 || max < 1) {
        PyErr_SetString(PyExc_ValueError, "offset must be >= 0 and max_frames >= 1");
        goto done;
    }
    if (base != Py_None && !PyMemoryView_Check(base)) {
        PyErr_SetString(PyExc_TypeError, "base must be None or a memoryview of data");
        goto done;
    }
    if (base != Py_None && PyMemoryView_GET_BUFFER(base)->len != view.len) {
        PyErr_SetString(PyExc_ValueError, "base must be a memoryview of data");
        goto done;
    }
    fill = is_plain_tuple_type(frame_cls);
    if (off < view.len && max > (view.len - off) / FRAME_OVERHEAD + 1)
        max = (view.len - off) / FRAME_OVERHEAD + 1;
    if (off >= view.len)
        max = 1;
    starts = PyMem_Malloc((size_t)max * sizeof(Py_ssize_t));
    if (!starts) {
        PyErr_NoMemory();
        goto done;
    }
    {
        const unsigned char *data = view.buf;
        Py_ssize_t max_bytes = base == Py_None ? DECODE_CHUNK_BYTES : PY_SSIZE_T_MAX;
        if (view.len - off >= NOGIL_MIN_BYTES) {
            Py_BEGIN_ALLOW_THREADS;
            count = walk_range(data, view.len, &off, max, max_bytes, starts, lo, hi, trusted_end,
                               &done);
            Py_END_ALLOW_THREADS;
        }
        else
            count = walk_range(data, view.len, &off, max, max_bytes, starts, lo, hi, trusted_end,
                               &done);
        list = PyList_New(count);
        if (!list)
            goto done;
        for (Py_ssize_t i = 0; i < count; i++) {
            const unsigned char *p = data + starts[i];
            Py_ssize_t plen = (Py_ssize_t)get32(p) - MIN_FRAME_LENGTH;
            unsigned long long ts = get64(p + 12);
            PyObject *f[4], *item;
            if (!ts_obj || ts != last_ts) {
                Py_XDECREF(ts_obj);
                ts_obj = PyLong_FromUnsignedLongLong(ts);
                last_ts = ts;
                if (!ts_obj)
                    goto done;
            }
            f[0] = PyLong_FromUnsignedLongLong(get64(p + 4));
            Py_INCREF(ts_obj);
            f[1] = ts_obj;
            f[2] = PyLong_FromLong(p[20]);
            f[3] = base == Py_None
                       ? PyBytes_FromStringAndSize((const char *)p + HEAD_SIZE, plen)
                       : slice_of(base, starts[i] + HEAD_SIZE, starts[i] + HEAD_SIZE + plen);
            if (!f[0] || !f[2] || !f[3]) {
                for (int k = 0; k < 4; k++)
                    Py_XDECREF(f[k]);
                goto done;
            }
            if (fill) {
                item = ((PyTypeObject *)frame_cls)->tp_alloc((PyTypeObject *)frame_cls, 4);
                if (item) {
                    for (int k = 0; k < 4; k++)
                        PyTuple_SET_ITEM(item, k, f[k]);
                    /* ints and bytes only: it can be in no cycle, so the collector need not
                     * look at it (what CPython does for such tuples, _PyTuple_MaybeUntrack) */
                    if (base == Py_None && PyObject_GC_IsTracked(item))
                        PyObject_GC_UnTrack(item);
                }
                else {
                    for (int k = 0; k < 4; k++)
                        Py_DECREF(f[k]);
                }
            }
            else {
                item = PyObject_CallFunctionObjArgs(frame_cls, f[0], f[1], f[2], f[3], NULL);
                for (int k = 0; k < 4; k++)
                    Py_DECREF(f[k]);
            }
            if (!item)
                goto done;
            PyList_SET_ITEM(list, i, item);
        }
        result = Py_BuildValue("(Oni)", list, off, done);
    }
done:
    Py_XDECREF(ts_obj);
    Py_XDECREF(list);
    PyMem_Free(starts);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"crc32c", py_crc32c, METH_VARARGS,
     "crc32c(data, value=0) -> int: CRC-32C of data, continuing value (as the crc32c package)."},
    {"crc32c_sw", py_crc32c_sw, METH_VARARGS,
     "crc32c_sw(data, value=0) -> int: the same by the table (slice-by-8) path, for tests."},
    {"encode_batch_at", py_encode_batch_at, METH_VARARGS,
     "encode_batch_at(buf, offset, first_seq, timestamp_micros, payload_type, items,\n"
     "pieces=None) -> int: the loop of walship.core.frame.encode_batch_at, items already\n"
     "checked."},
    {"measure", py_measure, METH_O,
     "measure(items) -> int | None: the total length of items (a list or tuple) when every\n"
     "one is an exact bytes object, else None."},
    {"summarize", py_summarize, METH_VARARGS,
     "summarize(data, offset, prev_seq) -> (count, first_seq, first_ts, last_seq, last_ts,\n"
     "end, regressed): the loop of walship.core.frame.summarize."},
    {"decode_range", py_decode_range, METH_VARARGS,
     "decode_range(data, offset, max_frames, frame_cls, lo, hi, trusted_end, base)\n"
     "-> (list of frames, stop_offset, done): the loop of walship.core.frame.decode_range."},
    {"scan", py_scan, METH_VARARGS,
     "scan(data, offset, max_frames) -> (list of (off, end, seq, ts, type), stop_offset)."},
    {"decode", py_decode, METH_VARARGS,
     "decode(data, offset, max_frames, frame_cls) -> (list of frame_cls(seq, ts, type,\n"
     "payload)), stop_offset)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "walship.core._codec",
    .m_doc = "The per-frame loops of walship.core.frame in C (see that module).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__codec(void)
{
    PyObject *m;
    sw_init();
#ifdef HAVE_SSE42_PATH
    __builtin_cpu_init();
    use_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    if (use_hw) {
        zeros_init(zeros_long, LONG_BLOCK);
        zeros_init(zeros_short, SHORT_BLOCK);
    }
#endif
    m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddIntConstant(m, "HW_CRC", use_hw) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

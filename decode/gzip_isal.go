//go:build isal && cgo

package decode

/*
#cgo LDFLAGS: -lisal
#include <stdlib.h>
#include <isa-l/igzip_lib.h>

static struct inflate_state *palleto_inflate_new(void) {
	struct inflate_state *s = malloc(sizeof(struct inflate_state));
	if (s) {
		isal_inflate_init(s);
		s->crc_flag = ISAL_GZIP;
	}
	return s;
}

static void palleto_inflate_reset(struct inflate_state *s) {
	isal_inflate_reset(s);
	s->crc_flag = ISAL_GZIP;
}

// palleto_inflate inflates from in into out; the pointers stay in the state only during the
// call (they are Go memory, pinned by the caller).
static int palleto_inflate(struct inflate_state *s, unsigned char *in, unsigned int in_len, unsigned char *out,
		unsigned int out_len, unsigned int *consumed, unsigned int *produced, int *finished) {
	s->next_in = in;
	s->avail_in = in_len;
	s->next_out = out;
	s->avail_out = out_len;
	int ret = isal_inflate(s);
	*consumed = in_len - s->avail_in;
	*produced = out_len - s->avail_out;
	*finished = s->block_state == ISAL_BLOCK_FINISH;
	s->next_in = NULL;
	s->next_out = NULL;
	return ret;
}
*/
import "C"

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"runtime"
	"unsafe"
)

// Inflater names the gzip inflater this build uses: "isal" (Intel ISA-L through cgo).
const Inflater = "isal"

// isalMembers inflates every member of a gzip stream with ISA-L, which parses each member's
// header and checks its CRC and length; the zero padding after the last is accepted.
type isalMembers struct {
	br     *bufio.Reader
	state  *C.struct_inflate_state
	member bool // a member has begun and not finished
	done   bool
	err    error
	pin    runtime.Pinner
}

func openGzip(br *bufio.Reader, cs *watchedSource) (io.ReadCloser, error) {
	s := C.palleto_inflate_new()
	if s == nil {
		return nil, errors.New("isal: out of memory")
	}
	return &isalMembers{br: br, state: s}, nil
}

var isalErrors = map[C.int]string{
	C.ISAL_INVALID_BLOCK: "invalid deflate block", C.ISAL_INVALID_SYMBOL: "invalid deflate symbol",
	C.ISAL_INVALID_LOOKBACK: "invalid lookback distance", C.ISAL_INVALID_WRAPPER: "invalid gzip header",
	C.ISAL_UNSUPPORTED_METHOD: "unsupported compression method", C.ISAL_INCORRECT_CHECKSUM: "checksum or length mismatch",
	C.ISAL_NEED_DICT: "a dictionary is needed",
}

func (g *isalMembers) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	for len(p) > 0 {
		if g.done {
			return 0, io.EOF
		}
		if !g.member {
			more, err := skipZeros(g.br)
			if err != nil {
				g.err = err
				return 0, err
			}
			if !more {
				g.done = true
				return 0, io.EOF
			}
			C.palleto_inflate_reset(g.state)
			g.member = true
		}
		in, err := g.br.Peek(1)
		if len(in) == 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // the member was cut short
			}
			g.err = err
			return 0, err
		}
		in, _ = g.br.Peek(g.br.Buffered())
		out := p[:min(len(p), 1<<30)]
		var consumed, produced C.uint
		var finished C.int
		g.pin.Pin(&in[0])
		g.pin.Pin(&out[0])
		ret := C.palleto_inflate(g.state, (*C.uchar)(unsafe.Pointer(&in[0])), C.uint(len(in)), (*C.uchar)(unsafe.Pointer(&out[0])),
			C.uint(len(out)), &consumed, &produced, &finished)
		g.pin.Unpin()
		g.br.Discard(int(consumed))
		if ret < 0 {
			why := isalErrors[ret]
			if why == "" {
				why = fmt.Sprintf("error %d", int(ret))
			}
			g.err = fmt.Errorf("isal inflate: %s", why)
			return int(produced), g.err
		}
		if finished != 0 {
			g.member = false
		}
		if produced > 0 {
			return int(produced), nil
		}
		if consumed == 0 && finished == 0 { // no progress with all the input there is: never spin
			g.err = fmt.Errorf("isal inflate: no progress with %d bytes of input", len(in))
			return 0, g.err
		}
	}
	return 0, nil
}

func (g *isalMembers) Close() error {
	if g.state != nil {
		C.free(unsafe.Pointer(g.state))
		g.state = nil
	}
	return nil
}

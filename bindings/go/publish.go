package brokk

/*
#include "shims.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// PublishOptions are a message's id, metadata and priority (brokk_publish_options); the zero
// value means a generated id, metadata "{}" and priority 0.
type PublishOptions struct {
	// ID is the message id: 1..IDMaxLen bytes of printable ASCII; "" means generate one.
	// brokk does not check caller ids for uniqueness.
	ID string
	// Metadata is a JSON object stored and delivered with the message; nil means "{}".
	Metadata []byte
	// Priority: higher is delivered and fetched first; FIFO among equal priorities.
	Priority int32
}

// BatchMessage is one message of PublishBatch (brokk_batch_message).
type BatchMessage struct {
	Payload []byte // a JSON document
	PublishOptions
}

// Publish publishes payload, a JSON document, on topic (brokk_broker_publish) with opts (nil:
// defaults) and returns the message id. It works from any goroutine, including handlers.
// A nil payload is refused with ErrNullArgument; an empty one with ErrInvalidJSON.
func (b *Broker) Publish(topic string, payload []byte, opts *PublishOptions) (string, error) {
	// The options go as scalars and the id comes back in the result (shims.h): no Go pointer to
	// a Go output crosses, so Publish allocates only the id string it returns (and nothing
	// when the caller gave the id).
	var (
		hasOpts     bool
		cid, cmeta  *C.char
		cidLen      C.size_t
		cmetaLen    C.size_t
		cpriority   C.int32_t
		ctopic, tln = cText(topic)
	)
	if opts != nil {
		hasOpts = true
		cid, cidLen = cOptText(opts.ID, nil)
		cmeta, cmetaLen = cBytes(opts.Metadata, nil)
		cpriority = C.int32_t(opts.Priority)
	}
	cpayload, cpayloadLen := cBytes(payload, nil)
	p, err := b.acquire("publish")
	if err != nil {
		return "", err
	}
	r := C.gbrokk_broker_publish(p, ctopic, tln, cpayload, cpayloadLen, C.bool(hasOpts), cid, cidLen, cmeta, cmetaLen, cpriority)
	b.release()
	runtime.KeepAlive(b)
	runtime.KeepAlive(topic)
	runtime.KeepAlive(payload)
	runtime.KeepAlive(opts)
	if err := check("publish", r.result); err != nil {
		return "", err
	}
	if cidLen > 0 {
		return opts.ID, nil // the caller's id is the message's id: nothing to copy
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(&r.id[0])), r.id_len)), nil
}

func setPublishOptions(c *C.brokk_publish_options, o *PublishOptions, pin *runtime.Pinner) {
	c.id, c.id_len = cOptText(o.ID, pin)
	c.metadata, c.metadata_len = cBytes(o.Metadata, pin)
	c.priority = C.int32_t(o.Priority)
}

// PublishBatch publishes msgs on topic in one call, all or nothing
// (brokk_broker_publish_batch): a bad message fails the call, naming its index in the error,
// and nothing is published. It returns the ids in order.
func (b *Broker) PublishBatch(topic string, msgs []BatchMessage) ([]string, error) {
	var pin runtime.Pinner
	defer pin.Unpin()
	var cmsgs []C.brokk_batch_message
	var cmsgsPtr *C.brokk_batch_message // NULL for an empty batch
	if len(msgs) > 0 {
		// Go memory holding pointers to Go memory: everything it points to is pinned.
		cmsgs = make([]C.brokk_batch_message, len(msgs))
		for i := range msgs {
			cmsgs[i].payload, cmsgs[i].payload_len = cBytes(msgs[i].Payload, &pin)
			setPublishOptions(&cmsgs[i].options, &msgs[i].PublishOptions, &pin)
		}
		cmsgsPtr = &cmsgs[0]
	}
	ctopic, ctopicLen := cText(topic)
	var ids []C.char
	var idsPtr *C.char
	if len(msgs) > 0 {
		ids = make([]C.char, len(msgs)*C.BROKK_ID_BUFFER_SIZE)
		idsPtr = &ids[0]
	}
	p, err := b.acquire("publish batch")
	if err != nil {
		return nil, err
	}
	defer b.release()
	err = check("publish batch", C.gbrokk_broker_publish_batch(p, ctopic, ctopicLen, cmsgsPtr,
		C.size_t(len(msgs)), idsPtr, C.size_t(len(ids))))
	runtime.KeepAlive(b)
	runtime.KeepAlive(msgs)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(msgs))
	for i := range out {
		out[i] = C.GoString((*C.char)(unsafe.Pointer(&ids[i*C.BROKK_ID_BUFFER_SIZE])))
	}
	return out, nil
}

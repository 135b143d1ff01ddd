package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

var (
	topicPath = regexp.MustCompile(`^/v1/(projects/[^/]+/topics/[^/:]+)$`)
	subPath   = regexp.MustCompile(`^/v1/(projects/[^/]+/subscriptions/[^/:]+)$`)
)

// restAPI serves the admin subset of Pub/Sub's REST API (v1) by calling pstest in-process.
func restAPI(fake *pstest.Server) http.Handler {
	g := &fake.GServer
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if m := topicPath.FindStringSubmatch(r.URL.Path); m != nil {
			name := m[1]
			switch r.Method {
			case http.MethodPut:
				t := &pb.Topic{}
				if !decode(w, r, t) {
					return
				}
				t.Name = name
				reply(w, call(ctx, func() (proto.Message, error) { return g.CreateTopic(ctx, t) }))
			case http.MethodGet:
				reply(w, call(ctx, func() (proto.Message, error) { return g.GetTopic(ctx, &pb.GetTopicRequest{Topic: name}) }))
			case http.MethodDelete:
				reply(w, call(ctx, func() (proto.Message, error) { return g.DeleteTopic(ctx, &pb.DeleteTopicRequest{Topic: name}) }))
			default:
				fail(w, status.Error(codes.Unimplemented, "method not supported by this emulator"))
			}
			return
		}
		if m := subPath.FindStringSubmatch(r.URL.Path); m != nil {
			name := m[1]
			switch r.Method {
			case http.MethodPut:
				s := &pb.Subscription{}
				if !decode(w, r, s) {
					return
				}
				s.Name = name
				reply(w, call(ctx, func() (proto.Message, error) { return g.CreateSubscription(ctx, s) }))
			case http.MethodGet:
				reply(w, call(ctx, func() (proto.Message, error) {
					return g.GetSubscription(ctx, &pb.GetSubscriptionRequest{Subscription: name})
				}))
			case http.MethodDelete:
				reply(w, call(ctx, func() (proto.Message, error) {
					return g.DeleteSubscription(ctx, &pb.DeleteSubscriptionRequest{Subscription: name})
				}))
			default:
				fail(w, status.Error(codes.Unimplemented, "method not supported by this emulator"))
			}
			return
		}
		fail(w, status.Errorf(codes.NotFound, "%s %s is not served by this emulator's REST API", r.Method, r.URL.Path))
	})
}

type result struct {
	msg proto.Message
	err error
}

func call(_ context.Context, f func() (proto.Message, error)) result {
	m, err := f()
	return result{m, err}
}

func decode(w http.ResponseWriter, r *http.Request, into proto.Message) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil && len(body) > 0 {
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, into)
	}
	if err != nil {
		fail(w, status.Errorf(codes.InvalidArgument, "invalid JSON body: %v", err))
		return false
	}
	return true
}

func reply(w http.ResponseWriter, res result) {
	if res.err != nil {
		fail(w, res.err)
		return
	}
	out, err := protojson.Marshal(res.msg)
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// fail writes Google's JSON error shape: {"error": {"code", "message", "status"}}.
func fail(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	code := httpCode(st.Code())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error": map[string]any{"code": code, "message": st.Message(), "status": codeName(st.Code())},
	})
}

func httpCode(c codes.Code) int {
	switch c {
	case codes.OK:
		return 200
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return 400
	case codes.Unauthenticated:
		return 401
	case codes.PermissionDenied:
		return 403
	case codes.NotFound:
		return 404
	case codes.AlreadyExists, codes.Aborted:
		return 409
	case codes.ResourceExhausted:
		return 429
	case codes.Unimplemented:
		return 501
	case codes.Unavailable:
		return 503
	case codes.DeadlineExceeded:
		return 504
	default:
		return 500
	}
}

// codeName is the canonical upper-snake name Google's APIs use in error.status.
func codeName(c codes.Code) string {
	names := map[codes.Code]string{
		codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
		codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
		codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
		codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
		codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
		codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
		codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
		codes.Unauthenticated: "UNAUTHENTICATED",
	}
	if n, ok := names[c]; ok {
		return n
	}
	return "UNKNOWN"
}

package main

import (
	"strconv"
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
)

// service writes the server's side of s on ttrpcserver: the interface a server
// implements (protoc-gen-go-ttrpc's, with this package's types), the stream types, the
// service description, its registration, and the method list for tests.
func (gn *generator) service(s *protogen.Service) {
	g := gn.g
	ctx := contextPackage.Ident("Context")
	streamServer := gn.server.Ident("StreamServer")
	svcName := s.GoName + "Service"
	var streams []*protogen.Method

	g.P("// ", svcName, " is the server's side of service ", s.Desc.FullName(), ".")
	g.P("type ", svcName, " interface {")
	for _, m := range s.Methods {
		in, out := m.Input.GoIdent.GoName, m.Output.GoIdent.GoName
		switch {
		case m.Desc.IsStreamingClient(): // and server: checkService refuses the rest
			streams = append(streams, m)
			g.P(m.Comments.Leading, m.GoName, "(", ctx, ", ", streamType(s, m), ") error")
		case m.Desc.IsStreamingServer():
			streams = append(streams, m)
			g.P(m.Comments.Leading, m.GoName, "(", ctx, ", *", in, ", ", streamType(s, m), ") error")
		default:
			g.P(m.Comments.Leading, m.GoName, "(", ctx, ", *", in, ") (*", out, ", error)")
		}
	}
	g.P("}")
	g.P()

	for _, m := range streams {
		iface, impl := streamType(s, m), strings.ToLower(s.GoName)+m.GoName+"Server"
		in, out := m.Input.GoIdent.GoName, m.Output.GoIdent.GoName
		g.P("// ", iface, " is the server's side of a ", m.GoName, " stream.")
		g.P("type ", iface, " interface {")
		g.P("Send(*", out, ") error")
		if m.Desc.IsStreamingClient() {
			g.P("Recv() (*", in, ", error)")
		}
		g.P(streamServer)
		g.P("}")
		g.P()
		g.P("type ", impl, " struct {")
		g.P(streamServer)
		g.P("}")
		g.P()
		g.P("func (x *", impl, ") Send(m *", out, ") error {")
		g.P("return x.StreamServer.SendMsg(m)")
		g.P("}")
		g.P()
		if m.Desc.IsStreamingClient() {
			g.P("func (x *", impl, ") Recv() (*", in, ", error) {")
			g.P("m := new(", in, ")")
			g.P("if err := x.StreamServer.RecvMsg(m); err != nil {")
			g.P("return nil, err")
			g.P("}")
			g.P("return m, nil")
			g.P("}")
			g.P()
		}
	}

	g.P("// ", s.GoName, "ServiceDesc describes svc's methods for a ttrpcserver under the name")
	g.P("// ", strconv.Quote(string(s.Desc.FullName())), ".")
	g.P("func ", s.GoName, "ServiceDesc(svc ", svcName, ") *", gn.server.Ident("ServiceDesc"), " {")
	g.P("return &", gn.server.Ident("ServiceDesc"), "{")
	g.P("Methods: map[string]", gn.server.Ident("Method"), "{")
	for _, m := range s.Methods {
		if m.Desc.IsStreamingClient() || m.Desc.IsStreamingServer() {
			continue
		}
		g.P(strconv.Quote(m.GoName), ": func(ctx ", ctx, ", unmarshal func(", gn.server.Ident("Message"), ") error) (", gn.server.Ident("Message"), ", error) {")
		g.P("var req ", m.Input.GoIdent.GoName)
		g.P("if err := unmarshal(&req); err != nil {")
		g.P("return nil, err")
		g.P("}")
		g.P("resp, err := svc.", m.GoName, "(ctx, &req)")
		g.P("if err != nil {")
		g.P("return nil, err // a nil interface, not a nil *", m.Output.GoIdent.GoName)
		g.P("}")
		g.P("return resp, nil")
		g.P("},")
	}
	g.P("},")
	g.P("Streams: map[string]", gn.server.Ident("StreamDesc"), "{")
	for _, m := range streams {
		impl := strings.ToLower(s.GoName) + m.GoName + "Server"
		g.P(strconv.Quote(m.GoName), ": {")
		g.P("Handler: func(ctx ", ctx, ", stream ", streamServer, ") error {")
		if m.Desc.IsStreamingClient() {
			g.P("return svc.", m.GoName, "(ctx, &", impl, "{stream})")
		} else {
			g.P("m := new(", m.Input.GoIdent.GoName, ")")
			g.P("if err := stream.RecvMsg(m); err != nil {")
			g.P("return err")
			g.P("}")
			g.P("return svc.", m.GoName, "(ctx, m, &", impl, "{stream})")
		}
		g.P("},")
		g.P("StreamingClient: ", m.Desc.IsStreamingClient(), ",")
		g.P("StreamingServer: ", m.Desc.IsStreamingServer(), ",")
		g.P("},")
	}
	g.P("},")
	g.P("}")
	g.P("}")
	g.P()

	g.P("// Register", svcName, " registers svc's methods with r (a ttrpcserver.Server) under the")
	g.P("// service name ", strconv.Quote(string(s.Desc.FullName())), ".")
	g.P("func Register", svcName, "(r interface {")
	g.P("Register(service string, d *", gn.server.Ident("ServiceDesc"), ")")
	g.P("}, svc ", svcName, ") {")
	g.P("r.Register(", strconv.Quote(string(s.Desc.FullName())), ", ", s.GoName, "ServiceDesc(svc))")
	g.P("}")
	g.P()

	gn.methodInfo()
	g.P("// ", s.GoName, "Methods lists the methods of service ", s.Desc.FullName(), " in the .proto file's order.")
	g.P("var ", s.GoName, "Methods = []MethodInfo{")
	for _, m := range s.Methods {
		g.P("{Name: ", strconv.Quote(m.GoName),
			", Request: ", strconv.Quote(string(m.Input.Desc.FullName())),
			", Response: ", strconv.Quote(string(m.Output.Desc.FullName())),
			", StreamingClient: ", m.Desc.IsStreamingClient(),
			", StreamingServer: ", m.Desc.IsStreamingServer(), "},")
	}
	g.P("}")
	g.P()
}

// streamType names the interface of a streaming method's server side, as
// protoc-gen-go-ttrpc does.
func streamType(s *protogen.Service, m *protogen.Method) string {
	return s.GoName + "_" + m.GoName + "Server"
}

// methodInfo writes the MethodInfo type once per file.
func (gn *generator) methodInfo() {
	if gn.wroteMethodInfo {
		return
	}
	gn.wroteMethodInfo = true
	g := gn.g
	g.P("// MethodInfo describes one method of a service.")
	g.P("type MethodInfo struct {")
	g.P("Name              string // the method's name, the last element of its full name")
	g.P("Request, Response string // the messages' full names")
	g.P("StreamingClient   bool   // the client sends a stream of requests")
	g.P("StreamingServer   bool   // the server sends a stream of responses")
	g.P("}")
	g.P()
}

package xds_test

import (
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	runtime "github.com/envoyproxy/go-control-plane/envoy/service/runtime/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	rsrc "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	nodeKey      = "node"
	clusterName  = "cluster0"
	routeName    = "route0"
	listenerName = "listener0"
	runtimeName  = "runtime0"
	version1     = "x"
	version2     = "y"
)

// group hashes every node without an ID to nodeKey (as go-control-plane's
// tests do), so requests need no Node.
type group struct{}

func (group) ID(node *core.Node) string {
	if node != nil && node.GetId() != "" {
		return node.GetId()
	}
	return nodeKey
}

func adsSource() *core.ConfigSource {
	return &core.ConfigSource{
		ResourceApiVersion:    core.ApiVersion_V3,
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
	}
}

func makeEndpoint(clusterName, host string, port uint32) *endpoint.ClusterLoadAssignment {
	return &endpoint.ClusterLoadAssignment{
		ClusterName: clusterName,
		Endpoints: []*endpoint.LocalityLbEndpoints{{
			// gRPC rejects localities without an ID and ignores those
			// without a weight.
			Locality:            &core.Locality{Region: "region", Zone: "zone", SubZone: "subzone"},
			LoadBalancingWeight: wrapperspb.UInt32(1),
			LbEndpoints: []*endpoint.LbEndpoint{{
				HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
					Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
						Protocol:      core.SocketAddress_TCP,
						Address:       host,
						PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
					}}},
				}},
			}},
		}},
	}
}

func makeCluster(name string) *cluster.Cluster {
	return &cluster.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		LbPolicy:             cluster.Cluster_ROUND_ROBIN,
	}
}

func makeRoute(name, domain, clusterName string) *route.RouteConfiguration {
	return &route.RouteConfiguration{
		Name: name,
		VirtualHosts: []*route.VirtualHost{{
			Name:    "vh-" + name,
			Domains: []string{domain},
			Routes: []*route.Route{{
				Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
				Action: &route.Route_Route{Route: &route.RouteAction{
					ClusterSpecifier: &route.RouteAction_Cluster{Cluster: clusterName},
				}},
			}},
		}},
	}
}

// makeAPIListener is a gRPC-style listener: an ApiListener wrapping an
// HttpConnectionManager that takes its routes from RDS over ADS, with the
// router filter last.
func makeAPIListener(t testing.TB, name, routeName string) *listener.Listener {
	routerCfg, err := anypb.New(&router.Router{})
	if err != nil {
		t.Fatal(err)
	}
	manager := &hcm.HttpConnectionManager{
		CodecType:  hcm.HttpConnectionManager_AUTO,
		StatPrefix: "http",
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: routeName,
		}},
		HttpFilters: []*hcm.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: routerCfg},
		}},
	}
	api, err := anypb.New(manager)
	if err != nil {
		t.Fatal(err)
	}
	return &listener.Listener{Name: name, ApiListener: &listener.ApiListener{ApiListener: api}}
}

func makeRuntime(name string) *runtime.Runtime {
	return &runtime.Runtime{Name: name, Layer: &structpb.Struct{Fields: map[string]*structpb.Value{
		"field-0": structpb.NewNumberValue(100),
	}}}
}

var testTypes = []string{rsrc.EndpointType, rsrc.ClusterType, rsrc.RouteType, rsrc.ListenerType, rsrc.RuntimeType}

// names are the resource names each type's watches ask for (nil: wildcard).
var names = map[string][]string{
	rsrc.EndpointType: {clusterName},
	rsrc.ClusterType:  nil,
	rsrc.RouteType:    {routeName},
	rsrc.ListenerType: nil,
	rsrc.RuntimeType:  nil,
}

func makeSnapshot(t testing.TB, version string) *cache.Snapshot {
	s, err := cache.NewSnapshot(version, map[rsrc.Type][]types.Resource{
		rsrc.EndpointType: {makeEndpoint(clusterName, "127.0.0.1", 8080)},
		rsrc.ClusterType:  {makeCluster(clusterName)},
		rsrc.RouteType:    {makeRoute(routeName, "*", clusterName)},
		rsrc.ListenerType: {makeAPIListener(t, listenerName, routeName)},
		rsrc.RuntimeType:  {makeRuntime(runtimeName)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The test shop's GetItem in C++ (grpc++), for bench/grpc_calls.py: a server whose own round trip is small, so
// that what the gateway adds is not hidden under a Python server's. Same protos (tests/fixtures/grpc), same item
// for SKU-1, reflection and the health service on; every other method answers UNIMPLEMENTED.
//
//   built by bench/grpc_calls.py (g++ and Debian's libgrpc++-dev, protobuf-compiler-grpc); run: grpc_shop PORT

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <iostream>
#include <string>

#include "shop/v1/shop.grpc.pb.h"

namespace {

class Inventory final : public shop::v1::Inventory::Service {
  grpc::Status GetItem(grpc::ServerContext*, const shop::v1::GetItemRequest* request,
                       shop::v1::Item* item) override {
    if (request->sku() != "SKU-1") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no item " + request->sku());
    }
    item->set_sku("SKU-1");
    item->set_name("red kettle");
    item->set_quantity(4);
    item->mutable_price()->set_currency("EUR");
    item->mutable_price()->set_cents(2999);
    item->set_color(shop::v1::COLOR_RED);
    return grpc::Status::OK;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: grpc_shop PORT\n";
    return 2;
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  Inventory inventory;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(std::string("127.0.0.1:") + argv[1], grpc::InsecureServerCredentials());
  builder.RegisterService(&inventory);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    return 1;
  }
  server->Wait();
  return 0;
}

// libFuzzer target for the wire decoder: any bytes, decoded as a request, a reply and a stored task
// record, must never crash, hang or leak (the build adds ASan and UBSan), and whatever decodes must
// encode to bytes that decode to the same encoding again (the codec is stable on its own output).
// Built and run by scripts/fuzz.sh; crashes it finds become regression cases in codec_test.cpp.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocol/codec.hpp"

namespace {

template <class Message>
void check_stable(const Message& first) {
  std::string once;
  dispatch::protocol::encode(first, once);
  Message again;
  dispatch::protocol::decode_failure why;
  if (!dispatch::protocol::decode(once, again, why)) std::abort();  // our own output must decode
  std::string twice;
  dispatch::protocol::encode(again, twice);
  if (once != twice) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  dispatch::protocol::decode_failure why;

  dispatch::protocol::request request;
  if (dispatch::protocol::decode(bytes, request, why)) check_stable(request);

  dispatch::protocol::reply reply;
  if (dispatch::protocol::decode(bytes, reply, why)) check_stable(reply);

  dispatch::task stored;
  if (dispatch::protocol::decode_task(bytes, stored)) {
    std::string once;
    dispatch::protocol::encode_task(stored, once);
    dispatch::task again;
    if (!dispatch::protocol::decode_task(once, again)) std::abort();
    std::string twice;
    dispatch::protocol::encode_task(again, twice);
    if (once != twice) std::abort();
  }
  return 0;
}

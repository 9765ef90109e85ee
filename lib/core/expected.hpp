// expected<T, E>: a value or an error, for failures that are part of normal
// operation (a homeserver refusing a login). C++20 has no std::expected yet.
// Being replaced by boost::system::result (lib/net, lib/matrix and lib/credentials use it);
// kept until lib/sessions, lib/api and lib/config have moved.
#pragma once

#include <utility>
#include <variant>

namespace mxp {

template <typename E>
struct unexpected {
  E error;

  // So that `unexpected{e}` also initialises a boost::system::result<T, E> (the matrix layer's
  // upstream_result), for code that has not moved off expected yet.
  operator E() && { return std::move(error); }
  operator E() const& { return error; }
};
template <typename E>
unexpected(E) -> unexpected<E>;

template <typename T, typename E>
class expected {
 public:
  expected(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  expected(unexpected<E> e) : v_(std::in_place_index<1>, std::move(e.error)) {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }
  T&& operator*() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return std::get<0>(v_); }
  const E& error() const& { return std::get<1>(v_); }
  E&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, E> v_;
};

struct success {};  // the value of an expected that carries no data

}  // namespace mxp

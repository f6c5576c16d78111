// expected<T, E>: a value or the reason there is none, for the checks of auth/ (a refused token,
// pattern or secret file is an ordinary outcome, not an exception). The members are those of
// C++23's std::expected that we use, so the type can give way to it when the project moves on.
#pragma once

#include <utility>
#include <variant>

namespace megaphone::auth {

template <typename T, typename E>
class expected {
public:
    expected(T value)
        : v_{std::in_place_index<0>, std::move(value)} {}
    expected(E error)
        : v_{std::in_place_index<1>, std::move(error)} {}

    bool has_value() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }

    /// The value; throws std::bad_variant_access when there is none.
    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    /// The reason; throws std::bad_variant_access when there is a value.
    const E& error() const { return std::get<1>(v_); }

private:
    std::variant<T, E> v_;
};

} // namespace megaphone::auth

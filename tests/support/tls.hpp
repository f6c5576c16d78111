// TLS for tests: a self-signed certificate made at test time (OpenSSL's C API, P-256 key, one
// hour, CN and subjectAltName "localhost" and 127.0.0.1) written as PEM files into a fresh
// temporary directory that is removed afterwards, and a client SSL_CTX that trusts exactly that
// certificate. No private key is ever committed.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>

namespace megaphone::test {

class test_certificate {
public:
    test_certificate() {
        static std::atomic<unsigned> counter{0};
        dir_ = std::filesystem::temp_directory_path() /
               ("megaphone-tls-" + std::to_string(::getpid()) + "-" +
                std::to_string(counter.fetch_add(1)));
        std::filesystem::create_directories(dir_);

        std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key{EVP_EC_gen("P-256"),
                                                                &EVP_PKEY_free};
        std::unique_ptr<X509, decltype(&X509_free)> x509{X509_new(), &X509_free};
        if (!key || !x509)
            throw std::runtime_error("test_certificate: out of memory");
        X509* x = x509.get();
        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_gmtime_adj(X509_getm_notBefore(x), -60);
        X509_gmtime_adj(X509_getm_notAfter(x), 3600);
        X509_set_pubkey(x, key.get());
        X509_NAME* name = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
        X509_set_issuer_name(x, name);
        X509V3_CTX v3;
        X509V3_set_ctx_nodb(&v3);
        X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
        if (X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name,
                                                      "DNS:localhost,IP:127.0.0.1")) {
            X509_add_ext(x, ext, -1);
            X509_EXTENSION_free(ext);
        }
        if (X509_sign(x, key.get(), EVP_sha256()) == 0)
            throw std::runtime_error("test_certificate: cannot sign");

        write(cert_path(), [&](FILE* f) { return PEM_write_X509(f, x); });
        write(key_path(), [&](FILE* f) {
            return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
        });

        client_.reset(SSL_CTX_new(TLS_client_method()));
        if (!client_ ||
            SSL_CTX_load_verify_locations(client_.get(), cert_path().c_str(), nullptr) != 1)
            throw std::runtime_error("test_certificate: cannot make the client context");
        SSL_CTX_set_verify(client_.get(), SSL_VERIFY_PEER, nullptr);
    }
    ~test_certificate() {
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }
    test_certificate(const test_certificate&) = delete;
    test_certificate& operator=(const test_certificate&) = delete;

    std::filesystem::path cert_path() const { return dir_ / "cert.pem"; }
    std::filesystem::path key_path() const { return dir_ / "key.pem"; }
    /// A client context that verifies the server against this certificate.
    SSL_CTX* client() const noexcept { return client_.get(); }

private:
    template <class F>
    void write(const std::filesystem::path& path, F&& f) {
        FILE* file = std::fopen(path.c_str(), "w");
        if (!file)
            throw std::runtime_error("test_certificate: cannot write " + path.string());
        const int ok = f(file);
        std::fclose(file);
        if (ok != 1)
            throw std::runtime_error("test_certificate: cannot write " + path.string());
    }

    struct ctx_free {
        void operator()(SSL_CTX* c) const noexcept { SSL_CTX_free(c); }
    };
    std::filesystem::path dir_;
    std::unique_ptr<SSL_CTX, ctx_free> client_;
};

} // namespace megaphone::test

#pragma once
// RAII over the CUDA runtime: device buffers, streams, events. Every failing call throws npft::Error naming the call.
#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "../../core/error.hpp"

namespace npft::cuda {

/// Throws npft::Error("<what>: <CUDA error string>") unless status is cudaSuccess.
inline void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) fail(what, ": ", cudaGetErrorString(status), " (", static_cast<int>(status), ")");
}

/// Number of visible CUDA devices; 0 (not an error) when there is no driver or no device.
inline int device_count() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        (void)cudaGetLastError();  // clear the sticky "no device" error so later calls start clean
        return 0;
    }
    return count;
}

/// Why no CUDA device can be used, or an empty string when one can.
inline std::string no_device_reason() {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        (void)cudaGetLastError();
        return std::string("cudaGetDeviceCount failed: ") + cudaGetErrorString(status);
    }
    if (count == 0) return "no CUDA device is visible";
    return {};
}

/// Compute capability of the current device as major * 10 + minor (80 for sm_80).
inline int compute_capability() {
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    int major = 0, minor = 0;
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute(major)");
    check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "cudaDeviceGetAttribute(minor)");
    return major * 10 + minor;
}

/// Streaming multiprocessors of the current device (the split-K choice fills them).
inline int multiprocessor_count() {
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    int count = 0;
    check(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute(multiProcessorCount)");
    return count;
}

/// Why npft's kernels cannot run here (no usable device, or one older than sm_80), or empty when they can: GPU tests
/// and benchmarks print "SKIPPED: <reason>" and exit with 77 when it is not empty.
inline std::string kernels_unsupported_reason() {
    if (std::string reason = no_device_reason(); !reason.empty()) return reason;
    if (const int cc = compute_capability(); cc < 80)
        return "the kernels need sm_80 or newer, device is sm_" + std::to_string(cc);
    return {};
}

/// An owned, non-blocking CUDA stream.
class Stream {
public:
    Stream() { check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags"); }
    ~Stream() {
        if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
    }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    Stream(Stream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
    Stream& operator=(Stream&& other) noexcept {
        std::swap(stream_, other.stream_);
        return *this;
    }

    cudaStream_t get() const { return stream_; }
    void synchronize() const { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

private:
    cudaStream_t stream_ = nullptr;
};

/// An owned CUDA event, for timing on a stream.
class Event {
public:
    Event() { check(cudaEventCreate(&event_), "cudaEventCreate"); }
    ~Event() {
        if (event_ != nullptr) (void)cudaEventDestroy(event_);
    }
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    Event(Event&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}
    Event& operator=(Event&& other) noexcept {
        std::swap(event_, other.event_);
        return *this;
    }

    cudaEvent_t get() const { return event_; }
    void record(cudaStream_t stream) { check(cudaEventRecord(event_, stream), "cudaEventRecord"); }
    void synchronize() const { check(cudaEventSynchronize(event_), "cudaEventSynchronize"); }
    /// Milliseconds from `start` to this event (both recorded and completed).
    float elapsed_ms_since(const Event& start) const {
        float ms = 0.0f;
        check(cudaEventElapsedTime(&ms, start.event_, event_), "cudaEventElapsedTime");
        return ms;
    }

private:
    cudaEvent_t event_ = nullptr;
};

/// An owned device array of `size` elements of trivially copyable T.
template <class T>
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(std::size_t size) : size_(size) {
        if (size_ > 0) check(cudaMalloc(reinterpret_cast<void**>(&data_), size_ * sizeof(T)), "cudaMalloc");
    }
    explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
    ~DeviceBuffer() {
        if (data_ != nullptr) (void)cudaFree(data_);
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
        std::swap(data_, other.data_);
        std::swap(size_, other.size_);
        return *this;
    }

    T* data() { return data_; }
    const T* data() const { return data_; }
    std::size_t size() const { return size_; }
    std::size_t bytes() const { return size_ * sizeof(T); }
    bool empty() const { return size_ == 0; }

    void upload(const std::vector<T>& host) {
        require(host.size() == size_, "DeviceBuffer::upload: host size must be ", size_, ", got ", host.size());
        if (size_ > 0) check(cudaMemcpy(data_, host.data(), bytes(), cudaMemcpyHostToDevice), "cudaMemcpy(host to device)");
    }
    std::vector<T> download() const {
        std::vector<T> host(size_);
        if (size_ > 0) check(cudaMemcpy(host.data(), data_, bytes(), cudaMemcpyDeviceToHost), "cudaMemcpy(device to host)");
        return host;
    }

private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace npft::cuda

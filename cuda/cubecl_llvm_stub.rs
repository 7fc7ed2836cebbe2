//! genrelab's offline CUDA build (`cuda/build.sh`): a stand-in for the `cubecl-llvm` crate inside a
//! copy of `cubecl-cuda` 0.11.3. cubecl-cuda compiles kernels either to CUDA C++ for NVRTC or
//! through LLVM; the LLVM crate's build script downloads an LLVM bundle from GitHub, which a
//! machine with crates.io alone cannot reach. This copy always uses the CUDA C++ (NVRTC) backend
//! and this module supplies the few types the LLVM path names, so no LLVM is needed. Selecting
//! the LLVM path is an error that says so.
#![allow(dead_code)]

use core::ffi::c_char;
use core::fmt;
use cubecl_core::ir::nvidia::SmArch;
use cubecl_core::prelude::KernelDefinition;
use cubecl_environment::backtrace::BackTrace;
use cubecl_server::compiler::CompilationError;
use cubecl_server::kernel::BufferIOAttr;

pub mod nvptx {
    pub mod ptx_version {
        use core::fmt;

        /// A PTX ISA version (as cubecl-llvm's: 87 is PTX 8.7).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct PtxVersion(u32);

        impl PtxVersion {
            /// The newest version a driver of CUDA `driver` loads (`12080` is 12.8).
            pub fn for_driver(driver: i32) -> Option<Self> {
                DRIVER_PTX.iter().find(|(first, _)| driver >= *first).map(|(_, ptx)| Self(*ptx))
            }
        }

        impl fmt::Display for PtxVersion {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "ptx{}", self.0)
            }
        }

        const DRIVER_PTX: &[(i32, u32)] = &[
            (13030, 93), (13020, 92), (13010, 91), (13000, 90), (12090, 88), (12080, 87),
            (12050, 85), (12040, 84), (12030, 83), (12020, 82), (12010, 81), (12000, 80), (11080, 78),
            (11070, 77), (11060, 76), (11050, 75), (11040, 74), (11030, 73), (11020, 72), (11010, 71),
            (11000, 70), (10020, 65), (10010, 64), (10000, 63),
        ];
    }
}

pub mod shared {
    pub mod lowered_features {
        use cubecl_core::ir::DeviceProperties;

        pub enum GpuTarget {
            Nvptx,
        }

        /// The LLVM backend's feature restriction: nothing to restrict without it.
        pub fn restrict_features(_props: &mut DeviceProperties, _target: GpuTarget) {}
    }
}

#[derive(Clone, Debug)]
pub enum LlvmTarget {
    Nvptx,
}

#[derive(Clone, Debug)]
pub struct PlironCompiler {
    pub target: LlvmTarget,
}

#[derive(Default)]
pub struct PlironOptions {
    pub arch: Option<()>,
    pub sm_arch: Option<SmArch>,
    pub ptx_version: Option<nvptx::ptx_version::PtxVersion>,
    pub grid_constants: bool,
}

#[derive(Clone, Debug)]
pub struct NvptxModule {
    pub ptx: Vec<c_char>,
    pub entrypoint: String,
    pub ir: String,
    pub shared_memory_size: usize,
    pub io: Vec<BufferIOAttr>,
}

pub enum PlironArtifact {
    NvptxCode(NvptxModule),
    /// Never made: keeps cubecl-cuda's catch-all match arm reachable (no warning).
    Unsupported,
}

impl PlironCompiler {
    pub fn compile(&mut self, _kernel: KernelDefinition, _options: &PlironOptions) -> Result<PlironArtifact, CompilationError> {
        Err(CompilationError::Generic {
            reason: "this cubecl-cuda was built without its LLVM backend (genrelab cuda/build.sh): only CUDA C++ through NVRTC".to_string(),
            backtrace: BackTrace::capture(),
        })
    }

    pub fn lang_tag(&self) -> &'static str {
        "llvm"
    }
}

impl fmt::Display for LlvmTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nvptx")
    }
}


//! init_module / finit_module records into `init_module` events: the
//! module's name from its `.modinfo` (found in memory by the kernel side for
//! init_module, read from the file for finit_module).

use super::Processor;
use crate::enrich::modinfo;
use crate::events::*;
use crate::sensor::record::ModuleLoad;

impl Processor {
    /// The `init_module` event of one load, refused or not (`loaded`).
    pub(super) fn module_load(
        &mut self,
        ret: i64,
        m: ModuleLoad,
        (ancestors, command_line, exe): (Text, Text, FilePath),
    ) -> EventData {
        let module_name = match &m.path {
            Some(path) => modinfo::module_name_of_file(path, self.config.max_hash_size),
            // init_module: found in the image by the kernel side
            None => m.name.unwrap_or_default(),
        };
        EventData::InitModule(InitModuleData {
            ancestors,
            command_line,
            exe,
            syscall: if m.finit { "finit_module" } else { "init_module" }.into(),
            module_name,
            args: m.args,
            loaded: ret == 0,
        })
    }
}

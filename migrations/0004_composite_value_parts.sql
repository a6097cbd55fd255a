-- MISP matches a composite attribute (`filename|md5`, `domain|ip`...) by
-- either part of its value (MISP's value1 and value2 columns). The store keeps
-- the whole value; these partial expression indexes make a search by a part
-- an index lookup instead of a scan of every composite attribute.
CREATE INDEX attributes_value1 ON attributes (substr(value, 1, instr(value, '|') - 1)) WHERE instr(value, '|') > 0;
CREATE INDEX attributes_value2 ON attributes (substr(value, instr(value, '|') + 1)) WHERE instr(value, '|') > 0;

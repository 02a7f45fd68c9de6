// DCMTK wrapper

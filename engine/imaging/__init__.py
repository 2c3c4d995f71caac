"""Reading photos: decode, EXIF orientation, formats, thumbnails, perceptual hashes."""
